"""XDP on ports (issue 12), from the API down to the datapath's calls, on fakes: the xdp field
(validation, store, configuration file), the modes the switch asks the datapath for, the XDP
targets, the NAPI arrangement on veth peers, kernel bridges, rollback and reconciliation."""

from __future__ import annotations

import errno
import logging

import grpc
import pytest
from fakes import make_rig, serve_switch

from vswapi import switch_pb2 as pb
from vswitchd import config
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from vswitchd.model import Bridge, BridgeSpec, Port, PortFacts, PortSpec
from vswitchd.ports import DRIVERS
from vswitchd.ports import validate as validate_port
from vswitchd.state import StateStore

KERNEL_SAYS = "the kernel datapath runs no programs"


@pytest.fixture
def rig(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"))
    r.switch.create_bridge(BridgeSpec("br0"))
    return r


def ifx(rig, name):
    return rig.links.get(name).ifindex


def xdp_of(rig, name, bridge="br0"):
    """(asked, got, reason) as the switch reports them."""
    v = rig.switch.get_port(bridge, name)
    return v.xdp, v.xdp_mode, v.xdp_reason


def targets(rig):
    names = {info.ifindex: n for n, info in rig.links.table.items()}
    return {names.get(i, i) for i in rig.dp.xdp_targets}


def snapshot(rig):
    store = rig.switch.store.path
    return {"links": dict(rig.links.table), "dp_ports": dict(rig.dp.ports),
            "xdp": dict(rig.dp.xdp), "targets": set(rig.dp.xdp_targets),
            "gro": set(rig.ethtool.on), "store": store.read_bytes() if store.exists() else None}

# ---- the field ---------------------------------------------------------------------------


def test_every_type_takes_the_modes_of_the_api_enum():
    """(but a tunnel port: a VXLAN device runs no XDP program)"""
    for ptype in set(DRIVERS) - {"vxlan"}:
        for mode in ("", "auto", "native", "generic", "off"):
            spec = PortSpec("p1", ptype, xdp=mode, netns="c1" if ptype == "veth" else "")
            assert validate_port(spec).xdp == mode
    for mode in ("", "off"):
        assert validate_port(PortSpec("vx0", "vxlan", vni=5, xdp=mode)).xdp == mode
    for mode in ("auto", "native", "generic"):
        with pytest.raises(InvalidArgument, match="runs no XDP"):
            validate_port(PortSpec("vx0", "vxlan", vni=5, xdp=mode))


@pytest.mark.parametrize("bad", ["fast", "Native", "on", " off"])
def test_a_bad_mode_is_refused_naming_the_field_and_value(bad):
    with pytest.raises(InvalidArgument) as exc:
        validate_port(PortSpec("t1", "tap", xdp=bad))
    assert exc.value.field == "xdp"
    assert str(exc.value) == (f"xdp {bad!r}: must be one of auto, native, generic, off "
                              "(unset: the port type's default)")


def test_defaults_by_type():
    assert {t: d.xdp_default for t, d in DRIVERS.items()} == {
        "veth": "off", "tap": "auto", "system": "auto", "vxlan": "off"}


def test_the_store_round_trips_the_mode_and_old_rows_read_as_default(tmp_path):
    br = Bridge(BridgeSpec("br0"), {
        "t1": Port(PortSpec("t1", "tap", xdp="generic")),
        "c1": Port(PortSpec("c1", "veth", "c1", xdp="auto"), PortFacts(peer_gro=True)),
        "t2": Port(PortSpec("t2", "tap"))})
    StateStore(str(tmp_path)).save({"br0": br})
    got = StateStore(str(tmp_path)).load()["br0"].ports
    assert (got["t1"].spec.xdp, got["c1"].spec.xdp, got["t2"].spec.xdp) == (
        "generic", "auto", "")
    assert got["c1"].facts.peer_gro and not got["t1"].facts.peer_gro
    # a row written before the field existed (and one at its default) has no xdp key
    rows = br.to_dict()["ports"]
    assert "xdp" not in rows[2] and "peer_gro" not in rows[0]
    from vswitchd.model import port_from_row

    old = port_from_row({"name": "t9", "type": "tap", "netns": "", "peer_name": "",
                         "addresses": [], "mac": "", "mtu": 0, "owner": "",
                         "netns_created": False})
    assert (old.spec.xdp, old.facts.peer_gro) == ("", False)


def test_the_configuration_file_takes_xdp_even_unquoted_off():
    text = ("bridges:\n  br0:\n    ports:\n      t1: {type: tap, xdp: off}\n"
            "      t2: {type: tap, xdp: generic}\n      t3: {type: tap}\n")
    ports = config.parse(text, "x.yaml").bridges["br0"].ports
    assert (ports["t1"].xdp, ports["t2"].xdp, ports["t3"].xdp) == ("off", "generic", "")


def test_a_bad_mode_in_the_file_names_file_line_and_key():
    with pytest.raises(config.ConfigError) as exc:
        config.parse("bridges:\n  br0:\n    ports:\n      t1: {type: tap, xdp: fast}\n",
                     "x.yaml")
    assert str(exc.value) == ("x.yaml:4: bridges.br0.ports.t1.xdp: 'fast': must be one of "
                              "auto, native, generic, off (unset: the port type's default)")


# ---- modes the switch asks the datapath for ------------------------------------------------


def test_a_port_add_syncs_the_flood_groups_once(rig):
    """Every datapath call of an add-port (add_port, set_port_xdp, set_xdp_target: each would
    sync the bridge's XDP flood groups, which reads every member) is made within one
    deferred_flood_sync: one sync at its end."""
    before = len(rig.dp.calls)
    rig.switch.create_port("br0", PortSpec("t1", "tap"))
    made = [c[0] for c in rig.dp.calls[before:]]
    assert {"add_port", "set_port_xdp", "set_xdp_target"} <= set(made)
    assert all(rig.dp.deferred[before:])


def test_a_tap_gets_auto_and_is_a_target(rig):
    v = rig.switch.create_port("br0", PortSpec("t1", "tap"))
    assert rig.dp.called("set_port_xdp") == [(ifx(rig, "t1"), "auto")]
    assert (v.xdp, v.xdp_mode, v.xdp_reason) == ("auto", "native", "")
    assert targets(rig) == {"t1"}
    assert rig.stored()["br0"]["ports"][0].get("xdp") is None  # the default is not pinned


def test_a_veth_is_off_by_default_and_no_target_alone(rig):
    v = rig.switch.create_port("br0", PortSpec("c1", netns="c1"))
    assert rig.dp.called("set_port_xdp") == []  # a new port has no program to detach
    assert (v.xdp, v.xdp_mode) == ("off", "off")
    assert targets(rig) == set() and rig.ethtool.calls == []


def test_explicit_modes_and_the_fallback_reason(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("t1", "tap", xdp="generic"))
    sw.create_port("br0", PortSpec("t2", "tap", xdp="off"))
    rig.dp.no_native[rig.links.next_ifindex] = "veth"
    sw.create_port("br0", PortSpec("t3", "tap"))
    assert xdp_of(rig, "t1") == ("generic", "generic", "")
    assert xdp_of(rig, "t2") == ("off", "off", "")
    assert xdp_of(rig, "t3") == ("auto", "generic", "driver veth has no native XDP (errno 95)")
    assert targets(rig) == {"t1", "t2", "t3"}  # a TAP can always receive XDP frames


def test_explicit_native_the_driver_cannot_do_is_refused_and_undone(rig):
    sw = rig.switch
    before = snapshot(rig)
    rig.dp.no_native[rig.links.next_ifindex] = "mlx9"
    with pytest.raises(FailedPrecondition, match="driver mlx9 refused it"):
        sw.create_port("br0", PortSpec("t1", "tap", xdp="native"))
    assert snapshot(rig) == before and "t1" not in sw.ctx.bridges["br0"].ports


def test_system_ports_are_targets_only_with_native_xdp_and_not_veths(rig):
    sw = rig.switch
    rig.links.add_system("eth1")
    rig.links.add_system("eth2")
    rig.links.add_system("veth9", kind="veth")
    rig.dp.no_native[ifx(rig, "eth2")] = "e1000"
    for name in ("eth1", "eth2", "veth9"):
        sw.create_port("br0", PortSpec(name, "system"))
    assert [xdp_of(rig, n)[1] for n in ("eth1", "eth2", "veth9")] == [
        "native", "generic", "native"]
    assert targets(rig) == {"eth1"}


def test_set_port_changes_the_mode_at_run_time(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("t1", "tap"))
    i = ifx(rig, "t1")
    v = sw.update_port("br0", "t1", {"xdp": "generic"})
    assert (v.spec.xdp, v.xdp, v.xdp_mode) == ("generic", "generic", "generic")
    assert rig.dp.called("set_port_xdp")[-1] == (i, "generic")
    assert rig.stored()["br0"]["ports"][0]["xdp"] == "generic"
    sw.update_port("br0", "t1", {"xdp": "off"})
    assert i not in rig.dp.xdp and xdp_of(rig, "t1") == ("off", "off", "")
    sw.update_port("br0", "t1", {"xdp": ""})  # back to the type's default
    assert xdp_of(rig, "t1") == ("auto", "native", "")
    n = len(rig.dp.calls)
    sw.update_port("br0", "t1", {"xdp": "auto"})  # asked explicitly, the same mode in force
    assert rig.dp.calls[n:] == [] and rig.stored()["br0"]["ports"][0]["xdp"] == "auto"
    with pytest.raises(InvalidArgument, match="xdp 'turbo': must be one of"):
        sw.update_port("br0", "t1", {"xdp": "turbo"})
    with pytest.raises(InvalidArgument, match="only vlan, trunks, native_vlan, xdp and remotes"):
        sw.update_port("br0", "t1", {"mtu": 1400})


def test_set_port_is_undone_when_the_datapath_refuses(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.create_port("br0", PortSpec("t1", "tap", xdp="off"))
    before = snapshot(rig)
    rig.dp.fail_once("set_port_xdp", Unavailable("bpf_link_create: out of memory"))
    with pytest.raises(Unavailable):
        sw.update_port("br0", "t1", {"xdp": "generic", "vlan": 10})
    assert snapshot(rig) == before
    assert sw.get_port("br0", "t1").spec.xdp == "off" and rig.dp.vlans[ifx(rig, "t1")].access == 0


def test_set_port_is_undone_when_marking_targets_fails(rig):
    """The mode changed and the peer's GRO went on before the failure: all taken back."""
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    before = snapshot(rig)
    rig.dp.fail_once("set_xdp_target", Unavailable("map update failed"))
    with pytest.raises(Unavailable):
        sw.update_port("br0", "c1", {"xdp": "generic"})
    assert snapshot(rig) == before and not sw.ctx.bridges["br0"].ports["c1"].facts.peer_gro
    assert sw.get_port("br0", "c1").spec.xdp == "" and xdp_of(rig, "c1")[1] == "off"
    assert ("set_gro", "eth0", "c1", True) in rig.ethtool.calls  # it had been turned on


def test_set_port_is_undone_when_the_store_fails(rig, monkeypatch):
    sw = rig.switch
    sw.create_port("br0", PortSpec("t1", "tap"))

    def save(_bridges, meta=None):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(sw.store, "save", save)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        sw.update_port("br0", "t1", {"xdp": "generic"})
    assert xdp_of(rig, "t1") == ("auto", "native", "")


def test_a_port_is_undone_when_set_port_xdp_raises(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    before = snapshot(rig)
    rig.dp.fail_once("set_port_xdp", Unavailable("bpf_link_create: out of memory"))
    with pytest.raises(Unavailable):
        sw.create_port("br0", PortSpec("t1", "tap"))
    assert snapshot(rig) == before and rig.links.get("t1") is None


def test_a_new_veth_with_xdp_is_undone_with_its_peers_gro_when_a_late_step_fails(rig):
    sw = rig.switch
    before = snapshot(rig)
    rig.dp.fail_once("set_xdp_target", Unavailable("map update failed"))
    with pytest.raises(Unavailable):
        sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    assert snapshot(rig) == before and rig.links.get("c1") is None
    assert ("set_gro", "eth0", "c1", True) in rig.ethtool.calls  # it had been turned on


# ---- kernel bridges ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "native", "generic", "off"])
def test_a_kernel_bridge_refuses_any_explicit_mode(rig, mode):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("kbr", "kernel"))
    with pytest.raises(FailedPrecondition) as exc:
        sw.create_port("kbr", PortSpec("t1", "tap", xdp=mode))
    assert str(exc.value).startswith(f"XDP mode {mode} is not supported on bridge kbr: it uses "
                                      "the kernel datapath (a plain Linux bridge), which runs "
                                      "no programs")
    assert rig.links.get("t1") is None and [c[0] for c in rig.dp.calls] == ["add_bridge"]


def test_a_kernel_bridge_is_silent_by_default_and_refuses_set_port(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("kbr", "kernel"))
    n = len(rig.dp.calls)
    sw.create_port("kbr", PortSpec("t1", "tap"))
    sw.create_port("kbr", PortSpec("c1", netns="c1"))
    assert rig.dp.calls[n:] == [] and rig.ethtool.calls == []
    assert xdp_of(rig, "t1", "kbr") == ("off", "off", KERNEL_SAYS)
    with pytest.raises(FailedPrecondition, match="runs no programs"):
        sw.update_port("kbr", "t1", {"xdp": "generic"})
    assert sw.update_port("kbr", "t1", {"xdp": ""}).xdp_mode == "off"  # the default is fine


def test_an_api_request_for_a_kernel_bridge_is_failed_precondition(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", "kernel"))
    with serve_switch(rig.switch) as stub:
        with pytest.raises(grpc.RpcError) as err:
            stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
                bridge="kbr", name="t1", type=pb.PORT_TYPE_TAP, xdp=pb.XDP_NATIVE)))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "runs no programs" in err.value.details()


# ---- NAPI on veth peers --------------------------------------------------------------------


def test_a_taps_xdp_leaves_the_container_veths_alone(rig):
    """Frames for containers go through TC (bpf_redirect_peer is faster into a namespace than
    an XDP redirect into the veth): a TAP with XDP makes no veth a target, touches no peer."""
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    assert xdp_of(rig, "t1")[1] == "native" and targets(rig) == {"t1"}
    # nor does a container that joins the bridge afterwards, nor the TAP's XDP going and coming
    sw.create_port("br0", PortSpec("c2", netns="c2"))
    sw.update_port("br0", "t1", {"xdp": "off"})
    sw.update_port("br0", "t1", {"xdp": "generic"})
    assert targets(rig) == {"t1"} and rig.ethtool.calls == []
    assert not rig.ethtool.peer_gro("c1") and not rig.ethtool.peer_gro("c2")
    assert not any(p.get("peer_gro") for p in rig.stored()["br0"]["ports"])


def test_veth_peers_get_gro_while_the_veth_runs_xdp(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.create_port("br0", PortSpec("c2", netns="c2", peer_name="eth1", xdp="generic"))
    assert not rig.ethtool.peer_gro("c1") and rig.ethtool.peer_gro("c2")
    assert ("set_gro", "eth1", "c2", True) in rig.ethtool.calls
    assert targets(rig) == {"c2"}
    stored = {p["name"]: p for p in rig.stored()["br0"]["ports"]}
    assert stored["c2"]["peer_gro"] and not stored["c1"].get("peer_gro")
    # its XDP goes off: the peer's GRO goes off again, the veth is no target
    sw.update_port("br0", "c2", {"xdp": "off"})
    assert not rig.ethtool.peer_gro("c2") and targets(rig) == set()
    assert not any(p.get("peer_gro") for p in rig.stored()["br0"]["ports"])


def test_set_port_turns_a_veths_xdp_and_its_peer_on_and_off(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    sw.update_port("br0", "c1", {"xdp": "generic"})
    assert rig.ethtool.peer_gro("c1") and targets(rig) == {"c1", "t1"}
    sw.update_port("br0", "c1", {"xdp": "off"})
    assert not rig.ethtool.peer_gro("c1") and targets(rig) == {"t1"}


def test_a_veth_with_xdp_itself_makes_the_bridge_arrange_its_peer(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    assert xdp_of(rig, "c1")[1] == "generic"
    assert rig.ethtool.peer_gro("c1") and targets(rig) == {"c1"}


def test_gro_someone_else_turned_on_is_left_on(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    rig.ethtool.set_gro("eth0", "c1", True)
    rig.ethtool.calls.clear()
    sw.update_port("br0", "c1", {"xdp": "generic"})
    port = sw.ctx.bridges["br0"].ports["c1"]
    assert not port.facts.peer_gro and "c1" in targets(rig)
    assert [c for c in rig.ethtool.calls if c[0] == "set_gro"] == []
    sw.update_port("br0", "c1", {"xdp": "off"})
    assert rig.ethtool.peer_gro("c1") and targets(rig) == set()


def test_a_peer_whose_gro_cannot_be_set_is_no_target_and_fails_nothing(rig, caplog):
    sw = rig.switch
    rig.ethtool.fail_once("set_gro", FailedPrecondition("cannot turn GRO on: not supported"))
    with caplog.at_level(logging.WARNING):
        sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    assert targets(rig) == set() and not rig.ethtool.peer_gro("c1")
    assert xdp_of(rig, "c1")[1] == "generic"  # it runs XDP; frames for it go through TC
    assert "frames for it go through TC" in caplog.text
    # the next arrangement tries again
    sw.create_port("br0", PortSpec("t2", "tap"))
    assert rig.ethtool.peer_gro("c1") and targets(rig) == {"c1", "t2"}


def test_adding_a_port_reads_that_port_only(rig, monkeypatch):
    """An add-port's cost does not grow with the bridge: the arrangement after it looks at the
    new port alone (a port's target and peer depend on it only)."""
    read: list[str] = []
    real = rig.links.get
    monkeypatch.setattr(rig.links, "get",
                        lambda name, fresh=False: (read.append(name), real(name))[1])
    counts = []
    for n in range(12):
        read.clear()
        rig.switch.create_port("br0", PortSpec(f"t{n}", "tap"))
        counts.append(sum(1 for name in read if name.startswith("t") and name != f"t{n}"))
    assert counts == [0] * 12 and targets(rig) == {f"t{n}" for n in range(12)}


def test_del_port_of_a_veth_clears_its_mark_and_its_peers_gro(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    i = ifx(rig, "c1")
    sw.delete_port("br0", "c1")
    assert ("set_xdp_target", i, False) in rig.dp.calls
    assert ("set_gro", "eth0", "c1", False) in rig.ethtool.calls
    assert targets(rig) == {"t1"}


def test_del_br_takes_everything_back(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    sw.delete_bridge("br0")
    assert rig.dp.xdp_targets == set() and rig.dp.xdp == {} and rig.ethtool.on == set()


# ---- reconciliation ------------------------------------------------------------------------


def test_a_restart_sets_every_mode_and_mark_again(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    sw.create_port("br0", PortSpec("c2", netns="c2"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    sw.create_port("br0", PortSpec("t2", "tap", xdp="generic"))
    rig.dp.calls.clear()
    rig.new_switch().reconcile()
    modes = {c[0]: c[1] for c in rig.dp.called("set_port_xdp")}
    assert modes == {ifx(rig, "c1"): "generic", ifx(rig, "c2"): "off", ifx(rig, "t1"): "auto",
                     ifx(rig, "t2"): "generic"}
    assert {c for c in rig.dp.called("set_xdp_target") if c[1]} == {
        (ifx(rig, n), True) for n in ("c1", "t1", "t2")}


def test_a_re_made_veth_gets_its_peers_gro_back(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("c1", netns="c1", xdp="generic"))
    rig.links.delete("c1")  # behind the daemon's back: the pair is gone
    sw.links_changed()
    assert rig.links.get("c1") is not None and rig.ethtool.peer_gro("c1")
    assert "c1" in targets(rig)


def test_a_mode_that_cannot_be_restored_is_reported_not_fatal(rig):
    sw = rig.switch
    sw.create_port("br0", PortSpec("t1", "tap", xdp="native"))
    rig.dp.no_native[ifx(rig, "t1")] = "tun"
    rig.dp.xdp.clear()
    sw2 = rig.new_switch()
    sw2.reconcile()
    v = sw2.get_port("br0", "t1")
    assert (v.state, v.xdp, v.xdp_mode) == ("up", "native", "off")
    assert v.xdp_reason.startswith("XDP mode native not restored: XDP in native mode")
    assert "t1" not in sw2.missing_names()


# ---- the API -------------------------------------------------------------------------------


def test_the_api_maps_asked_got_and_why(rig):
    rig.dp.no_native[rig.links.next_ifindex + 1] = "veth"
    with serve_switch(rig.switch) as stub:
        p = stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="t1", type=pb.PORT_TYPE_TAP, xdp=pb.XDP_GENERIC)))
        assert (p.xdp, p.xdp_mode, p.xdp_reason) == (pb.XDP_GENERIC, "generic", "")
        p = stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
            bridge="br0", name="t2", type=pb.PORT_TYPE_TAP)))
        assert (p.xdp, p.xdp_mode, p.xdp_reason) == (
            pb.XDP_AUTO, "generic", "driver veth has no native XDP (errno 95)")
        req = pb.UpdatePortRequest(port=pb.Port(bridge="br0", name="t1", xdp=pb.XDP_OFF))
        req.update_mask.paths.append("xdp")
        p = stub.UpdatePort(req)
        assert (p.xdp, p.xdp_mode, p.vlan) == (pb.XDP_OFF, "off", 0)
        req = pb.UpdatePortRequest(port=pb.Port(bridge="br0", name="t1"))
        req.update_mask.paths.append("xdp")  # unspecified: the type's default again
        assert stub.UpdatePort(req).xdp == pb.XDP_AUTO
        assert rig.switch.get_port("br0", "t1").spec.xdp == ""
        with pytest.raises(grpc.RpcError) as err:
            stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
                bridge="br0", name="t3", type=pb.PORT_TYPE_TAP, xdp=9)))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details().startswith("xdp 'enum value 9': must be one of")


def test_the_fake_datapath_keeps_the_contract():
    """NotFound for a non-port, InvalidArgument for a bad mode (what the switch relies on)."""
    from fakes import FakeDatapath

    dp = FakeDatapath()
    with pytest.raises(NotFound):
        dp.set_port_xdp(5, "auto")
    dp.add_bridge(1, "02:00:00:00:00:01")
    dp.add_port(1, 5, DRIVERS["tap"].dp_kind)
    with pytest.raises(InvalidArgument):
        dp.set_port_xdp(5, "turbo")
    assert dp.set_port_xdp(5, "auto") == XdpState("native") == dp.port_xdp(5)


def test_a_vanished_container_is_forgotten_without_touching_its_gone_peer(rig, caplog):
    sw = rig.switch
    rig.netns.names.add("ext")  # a container's namespace vswitchd did not create
    sw.create_port("br0", PortSpec("c1", netns="ext", xdp="generic"))
    assert rig.ethtool.peer_gro("c1")
    rig.netns.remove_named("ext")  # the container goes, and its veth pair with it
    rig.ethtool.calls.clear()
    with caplog.at_level(logging.WARNING):
        assert sw.forget_vanished_containers() == ["c1"]
    assert rig.ethtool.calls == [] and "GRO not turned off" not in caplog.text
