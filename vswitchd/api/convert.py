"""Mapping between API messages (vswapi) and the switch's plain values, both ways."""

from __future__ import annotations

from vswapi import switch_pb2 as pb
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.switch import BridgeView, FdbView, PortView, StatsView

DATAPATH_TO_PB = {"ebpf": pb.DATAPATH_EBPF, "kernel": pb.DATAPATH_KERNEL}
DATAPATH_FROM_PB = {pb.DATAPATH_UNSPECIFIED: "", **{v: k for k, v in DATAPATH_TO_PB.items()}}
PORT_TYPE_TO_PB = {
    "veth": pb.PORT_TYPE_VETH,
    "tap": pb.PORT_TYPE_TAP,
    "system": pb.PORT_TYPE_SYSTEM,
}
PORT_TYPE_FROM_PB = {pb.PORT_TYPE_UNSPECIFIED: "veth", **{v: k for k, v in PORT_TYPE_TO_PB.items()}}


def bridge_spec(msg: pb.Bridge) -> BridgeSpec:
    return BridgeSpec(
        name=msg.name,
        datapath=DATAPATH_FROM_PB.get(msg.datapath, f"enum value {msg.datapath}"),
        addresses=list(msg.addresses),
    )


def port_spec(msg: pb.Port) -> PortSpec:
    return PortSpec(
        name=msg.name,
        type=PORT_TYPE_FROM_PB.get(msg.type, f"enum value {msg.type}"),
        netns=msg.netns,
        peer_name=msg.peer_name,
        addresses=list(msg.addresses),
        mac=msg.mac,
        mtu=msg.mtu,
        owner=msg.owner,
    )


def port_msg(view: PortView) -> pb.Port:
    s = view.spec
    return pb.Port(
        name=s.name,
        bridge=view.bridge,
        type=PORT_TYPE_TO_PB[s.type],
        netns=s.netns,
        peer_name=s.peer_name,
        addresses=s.addresses,
        mac=s.mac,
        mtu=s.mtu,
        owner=s.owner,
        ifindex=view.ifindex,
        netns_created=s.netns_created,
        state=view.state,
    )


def bridge_msg(view: BridgeView) -> pb.Bridge:
    return pb.Bridge(
        name=view.spec.name,
        datapath=DATAPATH_TO_PB[view.spec.datapath],
        addresses=view.spec.addresses,
        ifindex=view.ifindex,
        mac=view.mac,
        ports=[port_msg(p) for p in view.ports],
    )


def fdb_msg(view: FdbView) -> pb.FdbEntry:
    return pb.FdbEntry(mac=view.mac, port=view.port, vlan=view.vlan, static=view.static,
                       age_seconds=view.age_seconds)


def stats_msg(view: StatsView) -> pb.PortStats:
    return pb.PortStats(
        port=view.port,
        rx_packets=view.rx_packets,
        rx_bytes=view.rx_bytes,
        tx_packets=view.tx_packets,
        tx_bytes=view.tx_bytes,
        drops=view.drops,
        drops_by_reason=view.drops_by_reason,
    )
