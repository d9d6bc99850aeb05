"""vswitchd.consistency.compare: every comparison it makes, shown passing on a consistent
picture and failing on one disagreement at a time. (Reading the real kernel and pinned maps:
tests/netns/test_check_state.py.)"""

from __future__ import annotations

import copy

import pytest

from vswitchd.consistency import DpPort, Observed, compare
from vswitchd.datapath.constants import FDB_F_STATIC, PORT_F_ACCESS, PORT_F_TRUNK
from vswitchd.datapath.ports import PortKind
from vswitchd.model import Bridge, BridgeFacts, BridgeSpec, Port, PortSpec, StaticFdb
from vswitchd.netlink.types import LinkInfo

BR, P1, P2, P3, T1, KB, K1 = 10, 11, 12, 13, 14, 20, 21


def link(name: str, ifindex: int, kind: str, master: int | None = None, mac: str = "",
         mtu: int = 1500, xdp: tuple = ()) -> LinkInfo:
    return LinkInfo(name=name, ifindex=ifindex, kind=kind, master=master, mac=mac, mtu=mtu,
                    up=True, operstate="UP", xdp_progs=xdp)


TAP_XDP = (("native", 7),)  # a TAP's default mode, auto, got native


def store() -> dict[str, Bridge]:
    br0 = Bridge(BridgeSpec("br0", addresses=["10.1.0.1/24"], nat=True), ports={
        "p1": Port(PortSpec("p1", netns="c", peer_name="e1")),
        "p2": Port(PortSpec("p2", vlan=10)),
        "p3": Port(PortSpec("p3", trunks=[20, 30], native_vlan=5)),
        "t1": Port(PortSpec("t1", type="tap", mtu=9000)),
    }, fdb=[StaticFdb("02:00:00:00:00:01", "p1")], facts=BridgeFacts(mac="02:aa:00:00:00:01"))
    br0.flows = ["a rule"]  # type: ignore[assignment]  # compare counts them only
    kb0 = Bridge(BridgeSpec("kb0", datapath="kernel"), ports={"k1": Port(PortSpec("k1"))})
    return {"br0": br0, "kb0": kb0}


def observed() -> Observed:
    return Observed(
        links={"br0": link("br0", BR, "bridge", mac="02:aa:00:00:00:01"),
               "p1": link("p1", P1, "veth", BR),
               "p2": link("p2", P2, "veth", BR), "p3": link("p3", P3, "veth", BR),
               "t1": link("t1", T1, "tun", BR, mtu=9000, xdp=TAP_XDP),
               "kb0": link("kb0", KB, "bridge"),
               "k1": link("k1", K1, "veth", KB)},
        peers={("c", "e1"): ""},
        nat={"br0": "10.1.0.0/24"},
        ports={BR: DpPort(BR, 0, PortKind.BRIDGE, 0), P1: DpPort(BR, 0, PortKind.PEER, 0),
               P2: DpPort(BR, 10, PortKind.PEER, PORT_F_ACCESS),
               P3: DpPort(BR, 0, PortKind.PEER, PORT_F_TRUNK),
               T1: DpPort(BR, 0, PortKind.DEVICE, 0)},
        trunks={P3: (5, frozenset({5, 20, 30}))},
        fdb={(BR, 0, "02:00:00:00:00:01"): (P1, FDB_F_STATIC)},
        flow_bridges={BR},
    )


def test_consistent():
    assert compare(store(), observed()) == []


def _obs(change) -> Observed:
    obs = copy.deepcopy(observed())
    change(obs)
    return obs


def _store(change) -> dict[str, Bridge]:
    bridges = store()
    change(bridges)
    return bridges


OBSERVED_CASES = {
    "bridge br0: its interface does not exist": lambda o: o.links.pop("br0"),
    "bridge kb0: interface kb0 is a veth, not a bridge":
        lambda o: o.links.update(kb0=link("kb0", KB, "veth")),
    "port k1 of bridge kb0: its interface does not exist": lambda o: o.links.pop("k1"),
    "port k1 of bridge kb0: interface k1 is not enslaved to kb0":
        lambda o: o.links.update(k1=link("k1", K1, "veth", None)),
    "port t1 of bridge br0: interface t1 is a veth, not a tun":
        lambda o: o.links.update(t1=link("t1", T1, "veth", BR, mtu=9000, xdp=TAP_XDP)),
    "port t1 of bridge br0: its MTU is 1500, not 9000":
        lambda o: o.links.update(t1=link("t1", T1, "tun", BR, xdp=TAP_XDP)),
    "port t1 of bridge br0: XDP mode auto but no XDP program is attached":
        lambda o: o.links.update(t1=link("t1", T1, "tun", BR, mtu=9000)),
    "port p1 of bridge br0: XDP mode off but a generic XDP program is attached":
        lambda o: o.links.update(p1=link("p1", P1, "veth", BR, xdp=(("generic", 8),))),
    "port k1 of bridge kb0: XDP mode off but a native XDP program is attached":
        lambda o: o.links.update(k1=link("k1", K1, "veth", KB, xdp=(("native", 9),))),
    "bridge br0: its MAC is 02:bb:00:00:00:01, not its own 02:aa:00:00:00:01":
        lambda o: o.links.update(br0=link("br0", BR, "bridge", mac="02:bb:00:00:00:01")),
    "port p1 of bridge br0: its network namespace c does not exist":
        lambda o: o.peers.update({("c", "e1"): "its network namespace c does not exist"}),
    "bridge br0: NAT is on but there is no NAT rule for it": lambda o: o.nat.clear(),
    "bridge br0: its NAT rule masquerades 10.2.0.0/24, not 10.1.0.0/24":
        lambda o: o.nat.update(br0="10.2.0.0/24"),
    "bridge kb0: NAT is off but a NAT rule (10.3.0.0/24) is installed":
        lambda o: o.nat.update(kb0="10.3.0.0/24"),
    "NAT rule for gone (10.4.0.0/24): the store has no bridge gone":
        lambda o: o.nat.update(gone="10.4.0.0/24"),
    "bridge br0: NAT is on but nftables cannot be read": lambda o: setattr(o, "nat", None),
    "bridge br0: the datapath's pinned maps do not exist": lambda o: setattr(o, "ports", None),
    f"bridge br0: no entry (ifindex {BR}) in the datapath's ports map":
        lambda o: o.ports.pop(BR),
    f"port p1 of bridge br0: no entry (ifindex {P1}) in the datapath's ports map":
        lambda o: o.ports.pop(P1),
    f"port p1 of bridge br0: the ports map puts ifindex {P1} on bridge ifindex 99, not {BR}":
        lambda o: setattr(o.ports[P1], "bridge", 99),
    f"port t1 of bridge br0: the ports map has kind {int(PortKind.PEER)}, not "
    f"{int(PortKind.DEVICE)}": lambda o: setattr(o.ports[T1], "kind", PortKind.PEER),
    "port p2 of bridge br0: the ports map does not make it an access port of VLAN 10":
        lambda o: setattr(o.ports[P2], "vlan", 11),
    "port p3 of bridge br0: the ports map does not make it a trunk port":
        lambda o: o.trunks.pop(P3),
    "port p3 of bridge br0: the datapath's trunk entry (native 5, VLANs [5, 20]) is not the "
    "stored one (native 5, VLANs [20, 30])": lambda o: o.trunks.update({P3: (5, {5, 20})}),
    "port p1 of bridge br0: the ports map gives it a VLAN mode the store does not":
        lambda o: setattr(o.ports[P1], "flags", PORT_F_ACCESS),
    "static FDB entry 02:00:00:00:00:01 vlan 0 of bridge br0: not in the datapath's FDB map":
        lambda o: o.fdb.clear(),
    "static FDB entry 02:00:00:00:00:01 vlan 0 of bridge br0: the datapath's entry is not "
    "static": lambda o: o.fdb.update({(BR, 0, "02:00:00:00:00:01"): (P1, 0)}),
    f"static FDB entry 02:00:00:00:00:01 vlan 0 of bridge br0: the datapath sends it to "
    f"ifindex {P2}, not to p1 ({P1})":
        lambda o: o.fdb.update({(BR, 0, "02:00:00:00:00:01"): (P2, FDB_F_STATIC)}),
    "bridge br0: the store has 1 flow rules but the datapath has no flow table for it":
        lambda o: o.flow_bridges.clear(),
    "ports map entry for ifindex 77 (bridge ifindex 10): no stored bridge or port has that "
    "interface": lambda o: o.ports.update({77: DpPort(BR, 0, 2, 0)}),
    "FDB map entry 02:00:00:00:00:09 vlan 0 of bridge ifindex 88: no stored eBPF bridge has "
    "that interface": lambda o: o.fdb.update({(88, 0, "02:00:00:00:00:09"): (1, 0)}),
    "flow table of bridge ifindex 88: no stored eBPF bridge has that interface":
        lambda o: o.flow_bridges.add(88),
}


@pytest.mark.parametrize("finding", OBSERVED_CASES)
def test_each_kernel_or_datapath_disagreement(finding):
    got = compare(store(), _obs(OBSERVED_CASES[finding]))
    assert finding in got, got  # (a vanished bridge also leaves its datapath entries stale)


def _no_flows(bridges):
    bridges["br0"].flows = []


def _nat_off(bridges):
    bridges["br0"].spec.nat = False


def _uplink(bridges):  # the bridge wears the uplink NIC's MAC then: not its own
    bridges["br0"].ports["p1"].spec.uplink = True


STORE_CASES = {
    "bridge br0: the store has 0 flow rules but the datapath still has a flow table for it":
        _no_flows,
    "bridge br0: NAT is off but a NAT rule (10.1.0.0/24) is installed": _nat_off,
}


def test_a_bridge_with_an_uplink_wears_another_mac():
    obs = observed()
    obs.links["br0"] = link("br0", BR, "bridge", mac="02:bb:00:00:00:01")
    assert compare(_store(_uplink), obs) == []


@pytest.mark.parametrize("finding", STORE_CASES)
def test_each_store_side_disagreement(finding):
    assert compare(_store(STORE_CASES[finding]), observed()) == [finding]
