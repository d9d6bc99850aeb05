"""The host topologies on fakes: VLAN modes, set-port, NAT bridges, veth gateways, uplinks (L3
and MAC moved to the bridge and back), multi-queue TAPs; validation, rollback, persistence,
reconcile, and the API mapping."""

from __future__ import annotations

import errno

import grpc
import pytest
from fakes import FakeDatapath, FakeLinks, FakeNetns, Rig

import vswitchd.datapath as dp_pkg
from vswapi import switch_pb2 as pb
from vswitchd.api import convert
from vswitchd.config import Config
from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.netlink.links import L3Config, Route

VlanConfig = dp_pkg.VlanConfig


@pytest.fixture
def rig(monkeypatch, tmp_path):
    ns = FakeNetns().install(monkeypatch)
    links = FakeLinks(ns)
    state = str(tmp_path / "state")
    return Rig(ns, links, FakeDatapath(), state, Config(state_dir=state))


UPLINK_L3 = L3Config(("192.168.1.10/24", "2001:db8::10/64"),
                     (Route("0.0.0.0/0", "192.168.1.1", 0),))


def snapshot(rig):
    store = rig.switch.store.path
    return (dict(rig.links.table), dict(rig.links.l3), dict(rig.dp.ports), dict(rig.dp.vlans),
            {k: dict(v) for k, v in rig.dp.fdb.items()}, dict(rig.nat.rules),
            store.read_bytes() if store.exists() else None)


def fail_store(monkeypatch, rig):
    def save(_bridges, meta=None):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rig.switch.store, "save", save)


# ---- VLANs -----------------------------------------------------------------------------------

def test_vlan_modes_reach_the_datapath_and_the_store(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("a1", vlan=10))
    sw.create_port("br0", PortSpec("t1", trunks=[30, 20, 20], native_vlan=5))
    sw.create_port("br0", PortSpec("p1"))
    idx = {n: rig.links.get(n).ifindex for n in ("a1", "t1", "p1")}
    assert rig.dp.vlans[idx["a1"]] == VlanConfig(access=10)
    assert rig.dp.vlans[idx["t1"]] == VlanConfig(trunks=frozenset({20, 30}), native=5)
    assert rig.dp.vlans[idx["p1"]] == VlanConfig()
    ports = {p["name"]: p for p in rig.stored()["br0"]["ports"]}
    assert (ports["a1"]["vlan"], ports["t1"]["trunks"], ports["t1"]["native_vlan"]) == (
        10, [20, 30], 5)
    assert "vlan" not in ports["p1"]  # unset fields stay out of the store
    assert [p.spec.vlan_mode() for p in sw.list_ports("br0")] == [
        "access:10", "all", "trunk:20,30/native:5"]


@pytest.mark.parametrize("fields, says", [
    ({"vlan": 4095}, "vlan 4095: must be in 1..4094"),
    ({"vlan": -1}, "vlan -1"),
    ({"trunks": [0]}, "trunks 0"),
    ({"trunks": [10, 4095]}, "trunks 4095"),
    ({"native_vlan": 5}, "applies only to trunk ports"),
    ({"trunks": [10], "native_vlan": 4095}, "native_vlan 4095"),
    ({"vlan": 10, "trunks": [20]}, "cannot be combined with vlan 10"),
])
def test_bad_vlan_settings(rig, fields, says):
    rig.switch.create_bridge(BridgeSpec("br0"))
    before = snapshot(rig)
    with pytest.raises(InvalidArgument, match=says.replace("(", r"\(")):
        rig.switch.create_port("br0", PortSpec("p1", **fields))
    assert snapshot(rig) == before


def test_kernel_bridge_refuses_vlans(rig):
    rig.switch.create_bridge(BridgeSpec("brk", "kernel"))
    with pytest.raises(FailedPrecondition, match="kernel datapath.*--datapath ebpf"):
        rig.switch.create_port("brk", PortSpec("p1", trunks=[10]))
    assert rig.links.get("p1") is None
    rig.switch.create_port("brk", PortSpec("p1"))
    with pytest.raises(FailedPrecondition, match="kernel datapath"):
        rig.switch.update_port("brk", "p1", {"vlan": 10})


def test_set_port_changes_vlan_at_run_time(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("p1", vlan=10))
    idx = rig.links.get("p1").ifindex
    view = sw.update_port("br0", "p1", {"vlan": 0, "trunks": [10, 20], "native_vlan": 0})
    assert view.spec.vlan_mode() == "trunk:10,20"
    assert rig.dp.called("set_port_vlan") == [(idx, VlanConfig(trunks=frozenset({10, 20})))]
    assert rig.stored()["br0"]["ports"][0]["trunks"] == [10, 20]


def test_set_port_merges_and_validates_together(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("p1", trunks=[10]))
    with pytest.raises(InvalidArgument, match="cannot be combined"):
        sw.update_port("br0", "p1", {"vlan": 20})
    sw.update_port("br0", "p1", {"native_vlan": 7})
    assert sw.get_port("br0", "p1").spec.vlan_mode() == "trunk:10/native:7"
    with pytest.raises(InvalidArgument, match="update_mask 'mtu'"):
        sw.update_port("br0", "p1", {"mtu": 9000})
    with pytest.raises(NotFound):
        sw.update_port("br0", "nope", {"vlan": 3})
    n = len(rig.dp.called("set_port_vlan"))
    sw.update_port("br0", "p1", {"native_vlan": 7})  # no change, no datapath call
    assert len(rig.dp.called("set_port_vlan")) == n


def test_set_port_undone_when_the_store_fails(rig, monkeypatch):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("p1", vlan=10))
    idx = rig.links.get("p1").ifindex
    fail_store(monkeypatch, rig)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        sw.update_port("br0", "p1", {"vlan": 20})
    assert rig.dp.vlans[idx] == VlanConfig(access=10)
    assert sw.get_port("br0", "p1").spec.vlan == 10


def test_reconcile_restores_vlans(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    sw.create_port("br0", PortSpec("p1", vlan=10))
    rig.dp.vlans.clear()
    rig.new_switch().reconcile()
    assert rig.dp.vlans[rig.links.get("p1").ifindex] == VlanConfig(access=10)


# ---- NAT -------------------------------------------------------------------------------------

def test_nat_bridge_masquerades_its_subnet_until_deleted(rig):
    sw = rig.switch
    view = sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"], nat=True))
    assert view.spec.nat and rig.nat.rules == {"br0": "10.9.0.0/24"} and rig.nat.forwarding
    assert rig.stored()["br0"]["nat"] is True
    sw.update_bridge("br0", nat=False)
    assert rig.nat.rules == {} and rig.stored()["br0"].get("nat", False) is False
    sw.update_bridge("br0", nat=True)
    rig.nat.rules.clear()  # lost while the daemon was down
    rig.new_switch().reconcile()
    assert rig.nat.rules == {"br0": "10.9.0.0/24"}
    rig.new_switch().delete_bridge("br0")
    assert rig.nat.rules == {}


@pytest.mark.parametrize("addresses, says", [
    ([], "needs an IPv4 address"),
    (["fd00::1/64"], "needs an IPv4 address"),
    (["10.9.0.1/24", "10.10.0.1/24"], "one IPv4 subnet"),
])
def test_nat_needs_one_ipv4_subnet(rig, addresses, says):
    before = snapshot(rig)
    with pytest.raises(InvalidArgument, match=says):
        rig.switch.create_bridge(BridgeSpec("br0", addresses=addresses, nat=True))
    assert snapshot(rig) == before


def test_nat_failure_rolls_the_bridge_back(rig):
    rig.nat.fail = FailedPrecondition("nftables refused the NAT change: boom")
    before = snapshot(rig)
    with pytest.raises(FailedPrecondition, match="boom"):
        rig.switch.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"], nat=True))
    assert snapshot(rig) == before and not rig.nat.forwarding  # forwarding turned back off


def test_bridge_addresses_change_at_run_time(rig):
    """UpdateBridge "addresses": replaced as a whole, the NAT rule follows the new subnet,
    stored, and a restart puts them back."""
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"], nat=True))
    sw.create_bridge(BridgeSpec("br1", addresses=["10.20.0.1/24"]))
    sw.create_port("br0", PortSpec("c1", netns="c1", addresses=["10.11.0.2/24"]))
    before_rev = sw.get_bridge("br0").revision
    view = sw.update_bridge("br0", addresses=["10.11.0.1/24", "fd00::1/64"])
    assert view.spec.addresses == ["10.11.0.1/24", "fd00::1/64"]
    assert view.revision > before_rev
    assert rig.links.addresses["br0"] == ["10.11.0.1/24", "fd00::1/64"]
    assert rig.nat.rules == {"br0": "10.11.0.0/24"}
    assert rig.stored()["br0"]["addresses"] == ["10.11.0.1/24", "fd00::1/64"]
    rig.links.addresses["br0"] = []  # lost while the daemon was down
    rig.new_switch().reconcile()
    assert rig.links.addresses["br0"] == ["10.11.0.1/24", "fd00::1/64"]


@pytest.mark.parametrize("addresses, says", [
    (["10.20.0.9/24"], "overlaps 10.20.0.1/24 of bridge br1"),
    (["10.9.0.2/24"], "already the address of port c1"),
    (["10.9.0.1/24", "10.9.0.1/16"], "given twice"),
    (["fd00::1/64"], "needs an IPv4 address"),  # the bridge masquerades
    (["10.9.0.300/24"], "ip"),
])
def test_bad_bridge_addresses_change_nothing(rig, addresses, says):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"], nat=True))
    sw.create_bridge(BridgeSpec("br1", addresses=["10.20.0.1/24"]))
    sw.create_port("br0", PortSpec("c1", netns="c1", addresses=["10.9.0.2/24"]))
    before = snapshot(rig)
    with pytest.raises(InvalidArgument, match=says):
        sw.update_bridge("br0", addresses=addresses)
    assert snapshot(rig) == before and rig.nat.rules["br0"] == "10.9.0.0/24"


def test_a_failed_nat_change_puts_the_addresses_back(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"], nat=True))
    before = snapshot(rig)
    rig.nat.fail = FailedPrecondition("nftables refused the NAT change: boom")
    with pytest.raises(FailedPrecondition, match="boom"):
        sw.update_bridge("br0", addresses=["10.12.0.1/24"])
    assert snapshot(rig) == before and rig.links.addresses["br0"] == ["10.9.0.1/24"]


def test_update_bridge_addresses_over_grpc_and_vswapi(rig):
    from types import SimpleNamespace

    from fakes import serve_switch

    from vswapi.controller import Switch

    rig.switch.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"]))
    with serve_switch(rig.switch) as stub:
        req = pb.UpdateBridgeRequest(bridge=pb.Bridge(name="br0", addresses=["10.8.0.1/24"],
                                                      nat=True))
        req.update_mask.paths.append("addresses")  # nat is not in the mask: left alone
        got = stub.UpdateBridge(req)
        assert (list(got.addresses), got.nat) == (["10.8.0.1/24"], False)
        bad = pb.UpdateBridgeRequest(bridge=pb.Bridge(name="br0"))
        bad.update_mask.paths.append("mac")
        with pytest.raises(grpc.RpcError) as err:
            stub.UpdateBridge(bad)
        assert "only addresses, nat can be changed" in err.value.details()
        sw = Switch(SimpleNamespace(stub=stub))  # the library's calls over this stub
        got = sw.update_bridge("br0", addresses=["10.7.0.1/24"], nat=True)
        assert (list(got.addresses), got.nat) == (["10.7.0.1/24"], True)
        with pytest.raises(ValueError):
            sw.update_bridge("br0")


def test_overlapping_bridge_subnets(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"]))
    with pytest.raises(InvalidArgument, match="overlaps 10.9.0.1/24 of bridge br0"):
        sw.create_bridge(BridgeSpec("br1", addresses=["10.9.0.129/25"]))
    with pytest.raises(InvalidArgument, match="overlaps"):
        sw.create_bridge(BridgeSpec("br1", addresses=["10.0.0.1/8"]))
    sw.create_bridge(BridgeSpec("br1", addresses=["10.10.0.1/24", "fd00::1/64"]))


# ---- gateways and multi-queue TAPs ------------------------------------------------------------

def test_gateway_sets_the_default_route(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"]))
    view = sw.create_port("br0", PortSpec("c1", addresses=["10.9.0.2/24"], gateway="10.9.0.1"))
    assert view.spec.gateway == "10.9.0.1" and rig.links.gateways["c1"] == "10.9.0.1"
    rig.links.delete("c1")
    rig.new_switch().reconcile()  # re-created with its route
    assert rig.links.gateways["c1"] == "10.9.0.1"


@pytest.mark.parametrize("spec, says", [
    (PortSpec("c1", addresses=["10.9.0.2/24"], gateway="10.8.0.1"),
     "outside the port's subnets"),
    (PortSpec("c1", addresses=["10.9.0.2/24"], gateway="10.9.0.2"), "the port's own address"),
    (PortSpec("c1", gateway="10.9.0.1"), "the port has no --ip"),
    (PortSpec("c1", addresses=["fd00::2/64"], gateway="10.9.0.1"), "outside"),
    (PortSpec("c1", addresses=["10.9.0.2/24"], gateway="nope"), "not an IP address"),
    (PortSpec("t1", type="tap", gateway="10.9.0.1"), "applies only to veth ports"),
    (PortSpec("t1", type="veth", multi_queue=True), "applies only to tap ports"),
    (PortSpec("t1", type="tap", uplink=True), "applies only to system ports"),
])
def test_bad_port_options(rig, spec, says):
    rig.switch.create_bridge(BridgeSpec("br0"))
    before = snapshot(rig)
    with pytest.raises(InvalidArgument, match=says):
        rig.switch.create_port("br0", spec)
    assert snapshot(rig) == before


def test_multi_queue_tap(rig):
    rig.switch.create_bridge(BridgeSpec("br0"))
    rig.switch.create_port("br0", PortSpec("vm0", type="tap", multi_queue=True))
    assert rig.links.multi_queue["vm0"] is True
    assert rig.stored()["br0"]["ports"][0]["multi_queue"] is True


# ---- uplinks -----------------------------------------------------------------------------------

@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_uplink_moves_l3_and_mac_to_the_bridge_and_back(rig, datapath):
    sw = rig.switch
    nic = rig.links.add_system("eth9")
    rig.links.l3["eth9"] = UPLINK_L3
    sw.create_bridge(BridgeSpec("br0", datapath))
    br = rig.links.get("br0")
    sw.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    assert rig.links.l3["br0"] == UPLINK_L3 and rig.links.l3["eth9"] == L3Config((), ())
    assert rig.links.get("br0").mac == nic.mac
    assert rig.links.master_name("eth9") == "br0"
    if datapath == "ebpf":  # the host's port answers to the NIC's MAC in the datapath
        assert rig.dp.called("add_bridge")[-1] == (br.ifindex, nic.mac)
        assert rig.dp.called("fdb_delete")[-1] == (br.ifindex, br.mac, 0)
    stored = rig.stored()["br0"]["ports"][0]
    assert stored["uplink"] and stored["bridge_mac"] == br.mac
    assert stored["uplink_addresses"] == list(UPLINK_L3.addresses)
    assert sw.get_port("br0", "eth9").facts.uplink_routes == [
        {"dst": "0.0.0.0/0", "gateway": "192.168.1.1", "metric": 0}]

    # restart: nothing to move, routes re-added idempotently, bridge keeps the NIC's MAC
    rig.new_switch().reconcile()
    assert rig.links.l3["br0"] == UPLINK_L3 and rig.links.get("br0").mac == nic.mac
    assert rig.links.called("set_addresses")[-1] == ("br0", list(UPLINK_L3.addresses))

    sw = rig.new_switch()
    sw.delete_port("br0", "eth9")
    assert rig.links.l3["eth9"] == UPLINK_L3 and rig.links.l3["br0"] == L3Config((), ())
    assert rig.links.get("br0").mac == br.mac and rig.links.master_name("eth9") is None
    assert rig.links.get("eth9") is not None  # a system port is released, never deleted


def test_uplink_failure_rolls_everything_back(rig):
    rig.links.add_system("eth9")
    rig.links.l3["eth9"] = UPLINK_L3
    rig.switch.create_bridge(BridgeSpec("br0"))
    before = snapshot(rig)
    rig.links.fail_once("move_l3", FailedPrecondition("cannot add address: boom"))
    with pytest.raises(FailedPrecondition, match="boom"):
        rig.switch.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    assert snapshot(rig) == before


def test_uplink_del_port_refused_when_addresses_cannot_go_back(rig):
    rig.links.add_system("eth9")
    rig.links.l3["eth9"] = UPLINK_L3
    rig.switch.create_bridge(BridgeSpec("br0"))
    rig.switch.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    rig.links.fail_once("move_l3", FailedPrecondition("cannot add address: boom"))
    with pytest.raises(FailedPrecondition, match="boom"):
        rig.switch.delete_port("br0", "eth9")
    assert rig.links.master_name("eth9") == "br0" and rig.links.l3["br0"] == UPLINK_L3
    assert "eth9" in rig.stored()["br0"]["ports"][0]["name"]


def test_uplink_bad_input(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    rig.links.add_system("other0", kind="bridge")
    rig.links.add_system("eth8", master="other0")
    rig.links.add_system("eth9")
    with pytest.raises(NotFound, match="nope0 does not exist"):
        sw.create_port("br0", PortSpec("nope0", type="system", uplink=True))
    with pytest.raises(FailedPrecondition, match="already enslaved to other0"):
        sw.create_port("br0", PortSpec("eth8", type="system", uplink=True))
    sw.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    rig.links.add_system("eth7")
    with pytest.raises(FailedPrecondition, match="already has an uplink \\(eth9\\)"):
        sw.create_port("br0", PortSpec("eth7", type="system", uplink=True))
    with pytest.raises(AlreadyExists):
        sw.create_port("br0", PortSpec("eth9", type="system", uplink=True))


def test_delete_bridge_gives_the_uplink_its_config_back(rig):
    rig.links.add_system("eth9")
    rig.links.l3["eth9"] = UPLINK_L3
    rig.switch.create_bridge(BridgeSpec("br0"))
    rig.switch.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    rig.switch.delete_bridge("br0")
    assert rig.links.l3["eth9"] == UPLINK_L3 and rig.links.get("br0") is None


def test_uplink_addresses_count_for_overlap(rig):
    rig.links.add_system("eth9")
    rig.links.l3["eth9"] = UPLINK_L3
    rig.switch.create_bridge(BridgeSpec("br0"))
    rig.switch.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    with pytest.raises(InvalidArgument, match="overlaps 192.168.1.10/24 of bridge br0"):
        rig.switch.create_bridge(BridgeSpec("br1", addresses=["192.168.1.1/24"]))


# ---- API mapping -------------------------------------------------------------------------------

def test_port_fields_map_both_ways():
    msg = pb.Port(name="p1", bridge="br0", type=pb.PORT_TYPE_TAP, trunks=[10, 20],
                  native_vlan=5, multi_queue=True)
    spec = convert.port_spec(msg)
    assert (spec.trunks, spec.native_vlan, spec.multi_queue) == ([10, 20], 5, True)
    veth = convert.port_spec(pb.Port(name="c1", vlan=7, gateway="10.0.0.1"))
    assert (veth.vlan, veth.gateway) == (7, "10.0.0.1")
    assert convert.port_spec(pb.Port(name="e", type=pb.PORT_TYPE_SYSTEM, uplink=True)).uplink
    assert convert.bridge_spec(pb.Bridge(name="b", nat=True)).nat
    assert convert.port_changes(pb.Port(vlan=3, trunks=[4]), ["vlan", "trunks", "mtu"]) == {
        "vlan": 3, "trunks": [4], "mtu": None}


def test_update_rpcs_over_grpc(rig):
    from fakes import serve_switch

    rig.switch.create_bridge(BridgeSpec("br0", addresses=["10.9.0.1/24"]))
    rig.switch.create_port("br0", PortSpec("p1", vlan=10))
    with serve_switch(rig.switch) as stub:
        req = pb.UpdatePortRequest(port=pb.Port(bridge="br0", name="p1", trunks=[20, 30]))
        req.update_mask.paths.extend(["vlan", "trunks", "native_vlan"])
        port = stub.UpdatePort(req)
        assert (port.vlan, list(port.trunks)) == (0, [20, 30])
        for paths, says in ((["mtu"], "update_mask"), ([], "names no field")):
            bad = pb.UpdatePortRequest(port=pb.Port(bridge="br0", name="p1"))
            bad.update_mask.paths.extend(paths)
            with pytest.raises(grpc.RpcError) as err:
                stub.UpdatePort(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert says in err.value.details()
        breq = pb.UpdateBridgeRequest(bridge=pb.Bridge(name="br0", nat=True))
        breq.update_mask.paths.append("nat")
        assert stub.UpdateBridge(breq).nat is True
        assert rig.nat.rules == {"br0": "10.9.0.0/24"}
