"""vswctl's --xdp (add-port, set-port) against the fake daemon of test_vswctl, and how
list-ports, show and -j print the XDP mode asked, got, and why."""

from __future__ import annotations

from test_vswctl import daemon, short_dir, tap, veth  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb


def test_add_port_sends_the_mode(daemon):  # noqa: F811
    daemon.fake.responses["CreatePort"] = pb.Port(name="t1")
    for word, value in (("auto", pb.XDP_AUTO), ("native", pb.XDP_NATIVE),
                        ("generic", pb.XDP_GENERIC), ("off", pb.XDP_OFF)):
        daemon.fake.requests.clear()
        rc, _, err = daemon.run("add-port", "br0", "t1", "--type", "tap", "--xdp", word)
        assert (rc, err) == (0, "")
        assert daemon.fake.only("CreatePort").port.xdp == value
    daemon.fake.requests.clear()
    daemon.run("add-port", "br0", "c1")
    assert daemon.fake.only("CreatePort").port.xdp == pb.XDP_MODE_UNSPECIFIED


def test_a_bad_mode_is_a_usage_error(daemon):  # noqa: F811
    rc, _, err = daemon.run("add-port", "br0", "t1", "--xdp", "turbo")
    assert rc == 1 and "argument --xdp: invalid choice: 'turbo'" in err
    assert daemon.fake.requests == []


def test_set_port_xdp_alone_or_with_a_vlan_mode(daemon):  # noqa: F811
    daemon.fake.responses["UpdatePort"] = pb.Port(name="t1")
    assert daemon.run("set-port", "br0", "t1", "--xdp", "generic")[0] == 0
    req = daemon.fake.only("UpdatePort")
    assert (req.port.name, req.port.xdp, list(req.update_mask.paths)) == (
        "t1", pb.XDP_GENERIC, ["xdp"])
    daemon.fake.requests.clear()
    assert daemon.run("set-port", "br0", "t1", "--vlan", "10", "--xdp", "off")[0] == 0
    req = daemon.fake.only("UpdatePort")
    assert (req.port.vlan, req.port.xdp) == (10, pb.XDP_OFF)
    assert sorted(req.update_mask.paths) == ["native_vlan", "trunks", "vlan", "xdp"]
    daemon.fake.requests.clear()
    rc, _, err = daemon.run("set-port", "br0", "t1", "--native-vlan", "5", "--xdp", "off")
    assert rc == 1 and "--native-vlan goes with --trunks" in err
    assert daemon.fake.requests == []


def test_a_refusal_exits_2_with_the_daemons_message(daemon):  # noqa: F811
    import grpc

    says = ("XDP mode native is not supported on bridge kbr: it uses the kernel datapath (a "
            "plain Linux bridge), which runs no programs, XDP or TC")
    daemon.fake.errors["CreatePort"] = (grpc.StatusCode.FAILED_PRECONDITION, says)
    rc, _, err = daemon.run("add-port", "kbr", "t1", "--type", "tap", "--xdp", "native")
    assert (rc, err) == (2, f"vswctl: FAILED_PRECONDITION: {says}\n")


REASON = "driver veth has no native XDP (errno 95)"
PORTS = [tap("t1", xdp=pb.XDP_AUTO, xdp_mode="native"),
         tap("t2", xdp=pb.XDP_AUTO, xdp_mode="generic", xdp_reason=REASON),
         tap("t3", xdp=pb.XDP_GENERIC, xdp_mode="generic"),
         veth("c1", xdp=pb.XDP_OFF, xdp_mode="off")]


def test_list_ports_shows_the_mode_got_marked_when_it_fell_back(daemon):  # noqa: F811
    daemon.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=PORTS)
    rc, out, _ = daemon.run("list-ports", "br0")
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["NAME", "TYPE", "STATE", "IFINDEX", "VLAN", "XDP"]
    col = {line.split()[0]: line.split()[5] for line in lines[1:]}
    assert col == {"t1": "native", "t2": "generic(fallback)", "t3": "generic", "c1": "off"}


def test_json_gives_asked_got_and_why(daemon):  # noqa: F811
    daemon.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=PORTS)
    rows = {r["name"]: r for r in daemon.json("list-ports", "br0")}
    assert {n: (r["xdp"], r["xdp_mode"], r["xdp_reason"]) for n, r in rows.items()} == {
        "t1": ("auto", "native", ""), "t2": ("auto", "generic", REASON),
        "t3": ("generic", "generic", ""), "c1": ("off", "off", "")}
    daemon.fake.responses["GetPort"] = pb.Port()  # unused; an old daemon says nothing:
    daemon.fake.responses["ListPorts"] = pb.ListPortsResponse(ports=[veth("c9")])
    old = daemon.json("list-ports", "br0")[0]
    assert (old["xdp"], old["xdp_mode"], old["xdp_reason"]) == ("default", "off", "")


def test_show_says_what_was_asked_and_why_when_it_differs(daemon):  # noqa: F811
    bridge = pb.Bridge(name="br0", datapath=pb.DATAPATH_EBPF, ports=[
        *PORTS, tap("t4", xdp=pb.XDP_NATIVE, xdp_mode="off",
                    xdp_reason="XDP mode native not restored: driver tun refused it")])
    daemon.fake.responses["ListBridges"] = pb.ListBridgesResponse(bridges=[bridge])
    _, out, _ = daemon.run("show")
    xdp = [line.strip() for line in out.splitlines() if line.strip().startswith("xdp:")]
    assert xdp == ["xdp: native", f"xdp: generic (asked auto; {REASON})", "xdp: generic",
                   "xdp: off (asked native; XDP mode native not restored: driver tun refused "
                   "it)"]  # c1 (off, as asked) has no line
    shown = daemon.json("show")[0]["ports"]
    assert [p["xdp_mode"] for p in shown] == ["off", "native", "generic", "generic", "off"]
