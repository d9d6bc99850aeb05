"""vswctl's VXLAN commands and options (add-port --type vxlan, set-port --remote, add-vtep,
del-vtep, list-vteps, add-fdb --remote, dump-fdb's REMOTE) against the fake daemon of
test_vswctl."""

from __future__ import annotations

import json

from test_vswctl import daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb


def test_add_port_sends_the_tunnel(daemon):  # noqa: F811
    daemon.fake.responses["CreatePort"] = pb.Port(name="vx0")
    rc, _, err = daemon.run("add-port", "br0", "vx0", "--type", "vxlan", "--vni", "100",
                            "--local", "10.0.0.1", "--dstport", "4790", "--remote", "10.0.0.2",
                            "--remote", "10.0.0.3")
    assert (rc, err) == (0, "")
    port = daemon.fake.only("CreatePort").port
    assert (port.type, port.vni, port.local, port.dstport, list(port.remotes)) == (
        pb.PORT_TYPE_VXLAN, 100, "10.0.0.1", 4790, ["10.0.0.2", "10.0.0.3"])


def test_set_port_replaces_or_empties_the_remotes(daemon):  # noqa: F811
    daemon.fake.responses["UpdatePort"] = pb.Port(name="vx0")
    assert daemon.run("set-port", "br0", "vx0", "--remote", "10.0.0.2")[0] == 0
    req = daemon.fake.only("UpdatePort")
    assert (list(req.port.remotes), list(req.update_mask.paths)) == (["10.0.0.2"], ["remotes"])
    daemon.fake.requests.clear()
    assert daemon.run("set-port", "br0", "vx0", "--no-remotes")[0] == 0
    req = daemon.fake.only("UpdatePort")
    assert (list(req.port.remotes), list(req.update_mask.paths)) == ([], ["remotes"])
    rc, _, err = daemon.run("set-port", "br0", "vx0", "--remote", "10.0.0.2", "--no-remotes")
    assert rc == 1 and "not allowed with" in err


def test_vtep_commands(daemon):  # noqa: F811
    vtep = pb.Vtep(bridge="br0", port="vx0", address="10.0.0.2", vni=100)
    daemon.fake.responses["CreateVtep"] = vtep
    assert daemon.run("add-vtep", "br0", "vx0", "10.0.0.2", "--may-exist")[0] == 0
    req = daemon.fake.only("CreateVtep")
    assert (req.vtep.bridge, req.vtep.port, req.vtep.address, req.may_exist) == (
        "br0", "vx0", "10.0.0.2", True)
    daemon.fake.requests.clear()
    daemon.fake.responses["DeleteVtep"] = pb.DeleteVtepResponse(deleted=True)
    assert daemon.run("del-vtep", "br0", "vx0", "10.0.0.2", "--if-exists")[0] == 0
    assert daemon.fake.only("DeleteVtep").if_exists
    daemon.fake.requests.clear()
    daemon.fake.responses["ListVteps"] = pb.ListVtepsResponse(vteps=[vtep])
    rc, out, _ = daemon.run("list-vteps", "br0")
    assert rc == 0 and out.split("\n")[0].split() == ["BRIDGE", "PORT", "VNI", "VTEP"]
    assert out.split("\n")[1].split() == ["br0", "vx0", "100", "10.0.0.2"]
    daemon.fake.requests.clear()
    rc, out, _ = daemon.run("-j", "list-vteps")
    assert json.loads(out) == [{"bridge": "br0", "port": "vx0", "address": "10.0.0.2",
                                "vni": 100}]
    assert daemon.fake.only("ListVteps").bridge == ""


def test_fdb_remote(daemon):  # noqa: F811
    daemon.fake.responses["CreateFdbEntry"] = pb.FdbEntry(mac="02:00:00:00:00:07", port="vx0")
    assert daemon.run("add-fdb", "br0", "02:00:00:00:00:07", "vx0", "--remote",
                      "10.0.0.2")[0] == 0
    assert daemon.fake.only("CreateFdbEntry").entry.remote == "10.0.0.2"
    daemon.fake.responses["ListFdbEntries"] = pb.ListFdbEntriesResponse(entries=[
        pb.FdbEntry(mac="02:00:00:00:00:07", port="vx0", static=True, remote="10.0.0.2"),
        pb.FdbEntry(mac="02:00:00:00:00:08", port="c1", age_seconds=3)])
    rc, out, _ = daemon.run("dump-fdb", "br0")
    lines = out.strip().split("\n")
    assert lines[0].split()[-1] == "REMOTE"
    assert lines[1].split()[-1] == "10.0.0.2" and lines[2].split()[-1] == "-"
    rc, out, _ = daemon.run("-j", "dump-fdb", "br0")
    assert [e["remote"] for e in json.loads(out)] == ["10.0.0.2", ""]
