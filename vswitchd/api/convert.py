"""Mapping between API messages (vswapi) and the switch's plain values, both ways."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from vswapi import switch_pb2 as pb
from vswapi.enums import XDP_MODES
from vswitchd.errors import InvalidArgument
from vswitchd.events import KINDS, Event, Lost
from vswitchd.flows.model import FULL, Match, format_value, mac_str
from vswitchd.flows.request import no_argument
from vswitchd.model import DATAPATHS, BridgeSpec, PortSpec
from vswitchd.ports import PORT_TYPES
from vswitchd.trace.packet_in import REASON_ACTION, REASON_TABLE_MISS, PacketInView
from vswitchd.trace.report import (
    FlowTableStage,
    Headers,
    L2Stage,
    OutputTag,
    TraceReport,
    VerdictStage,
    VlanStage,
)
from vswitchd.trace.watch import EventView
from vswitchd.views import BridgeView, FdbView, FlowView, PortView, StatsView, StatusView

# Enum values by name: a datapath or port type (vswitchd.ports) without one in the .proto fails
# here, at import.
DATAPATH_TO_PB = {d: pb.Datapath.Value(f"DATAPATH_{d.upper()}") for d in DATAPATHS}
DATAPATH_FROM_PB = {pb.DATAPATH_UNSPECIFIED: "", **{v: k for k, v in DATAPATH_TO_PB.items()}}
PORT_TYPE_TO_PB = {t: pb.PortType.Value(f"PORT_TYPE_{t.upper()}") for t in PORT_TYPES}
PORT_TYPE_FROM_PB = {pb.PORT_TYPE_UNSPECIFIED: "veth", **{v: k for k, v in PORT_TYPE_TO_PB.items()}}
XDP_TO_PB = {"": pb.XDP_MODE_UNSPECIFIED,
             **{m: pb.XdpMode.Value(f"XDP_{m.upper()}") for m in XDP_MODES}}
XDP_FROM_PB = {v: k for k, v in XDP_TO_PB.items()}
# PortSpec's fields are the request fields of the Port message, by the same names (the enums,
# type and xdp, are mapped to their words).
_PORT_FIELDS = [f.name for f in dataclasses.fields(PortSpec) if f.name not in ("type", "xdp")]
_LISTS = ("addresses", "trunks", "remotes")


def bridge_spec(msg: pb.Bridge) -> BridgeSpec:
    return BridgeSpec(
        name=msg.name,
        datapath=DATAPATH_FROM_PB.get(msg.datapath, f"enum value {msg.datapath}"),
        addresses=list(msg.addresses),
        nat=msg.nat,
    )


def port_spec(msg: pb.Port) -> PortSpec:
    values: dict[str, Any] = {n: list(getattr(msg, n)) if n in _LISTS else getattr(msg, n)
                              for n in _PORT_FIELDS}
    values["labels"] = dict(msg.labels)
    return PortSpec(type=PORT_TYPE_FROM_PB.get(msg.type, f"enum value {msg.type}"),
                    xdp=xdp_mode(msg.xdp), **values)


def xdp_mode(value: int) -> str:
    """An XdpMode as its word ("" = unspecified; an unknown value stays visible, for the
    validation to refuse)."""
    return XDP_FROM_PB.get(value, f"enum value {value}")


PORT_UPDATABLE = {"vlan": "vlan", "trunks": "trunks", "native_vlan": "native_vlan",
                  "xdp": "xdp", "remotes": "remotes"}


def port_changes(msg: pb.Port, paths: list[str]) -> dict[str, object]:
    """UpdatePort: the fields named by the mask, with their values from MSG (unknown paths are
    passed through by name so the switch can refuse them)."""
    out: dict[str, object] = {}
    for path in paths:
        if path in PORT_UPDATABLE:
            value = getattr(msg, path)
            if path in ("trunks", "remotes"):
                value = list(value)
            elif path == "xdp":
                value = xdp_mode(value)
            out[PORT_UPDATABLE[path]] = value
        else:
            out[path] = None
    return out


def port_msg(view: PortView) -> pb.Port:
    s = view.spec
    return pb.Port(
        type=PORT_TYPE_TO_PB[s.type],
        bridge=view.bridge,
        uplink_addresses=view.facts.uplink_addresses,
        netns_created=view.facts.netns_created,
        ifindex=view.ifindex,
        state=view.state,
        xdp=XDP_TO_PB[view.xdp or s.xdp],
        xdp_mode=view.xdp_mode,
        xdp_reason=view.xdp_reason,
        revision=view.facts.revision,
        **{n: getattr(s, n) for n in _PORT_FIELDS},
    )


def bridge_msg(view: BridgeView) -> pb.Bridge:
    return pb.Bridge(
        name=view.spec.name,
        datapath=DATAPATH_TO_PB[view.spec.datapath],
        addresses=view.spec.addresses,
        nat=view.spec.nat,
        ifindex=view.ifindex,
        mac=view.mac,
        ports=[port_msg(p) for p in view.ports],
        revision=view.revision,
    )


def status_msg(view: StatusView, version: str) -> pb.Status:
    return pb.Status(
        version=version,
        uptime_seconds=view.uptime_seconds,
        ebpf_supported=view.ebpf_supported,
        ebpf_unsupported_reason=view.ebpf_unsupported_reason,
        default_datapath=DATAPATH_TO_PB[view.default_datapath],
        kernel=view.kernel,
        fdb_aging_seconds=view.fdb_aging_seconds,
        watch_rate_limit=view.watch_rate_limit,
    )


def vtep_msg(vtep: tuple[str, str, str, int]) -> pb.Vtep:
    bridge, port, address, vni = vtep
    return pb.Vtep(bridge=bridge, port=port, address=address, vni=vni)


def fdb_msg(view: FdbView) -> pb.FdbEntry:
    return pb.FdbEntry(mac=view.mac, port=view.port, vlan=view.vlan, static=view.static,
                       remote=view.remote, age_seconds=view.age_seconds,
                       revision=view.revision)


def stats_msg(view: StatsView) -> pb.PortStats:
    return pb.PortStats(
        port=view.port,
        rx_packets=view.rx_packets,
        rx_bytes=view.rx_bytes,
        tx_packets=view.tx_packets,
        tx_bytes=view.tx_bytes,
        drops=view.drops,
        drops_by_reason=view.drops_by_reason,
        xdp_finished=view.xdp_finished,
        xdp_handoffs=view.xdp_handoffs,
    )


# ---- flows -----------------------------------------------------------------------------------
# Requests become FlowRequests in vswitchd.flows.request (desired.py shares it).

def match_msg(match: Match) -> pb.FlowMatch:
    msg = pb.FlowMatch()
    fill_match(msg, match)
    return msg


def fill_match(msg: pb.FlowMatch, match: Match) -> None:
    """Set MATCH's fields in MSG, in place (listing 20 000 rules copies no sub-messages)."""
    value: Any  # a field's value: int, str, or (value, mask)
    for name, value in zip(match._fields, match, strict=True):
        if value is None:
            continue
        if name in ("dl_src", "dl_dst"):
            v, m = value
            mac = getattr(msg, name)
            mac.mac = mac_str(v)
            if m != FULL[name]:
                mac.mask = mac_str(m)
        elif name in ("tp_src", "tp_dst"):
            v, m = value
            port = getattr(msg, name)
            port.SetInParent()
            port.port = v
            if m != FULL[name]:
                port.mask = m
        elif name in ("nw_src", "nw_dst", "ipv6_src", "ipv6_dst"):
            setattr(msg, name, format_value(name, value))
        else:
            setattr(msg, name, value)


def fill_flow(msg: pb.Flow, view: FlowView) -> None:
    """The listed rule in MSG, in place (e.g. `response.flows.add()`)."""
    r = view.rule
    msg.priority = r.priority
    if r.cookie:
        msg.cookie = r.cookie
    if r.idle_timeout:
        msg.idle_timeout = r.idle_timeout
    if r.hard_timeout:
        msg.hard_timeout = r.hard_timeout
    msg.match.SetInParent()
    fill_match(msg.match, r.match)
    for a in r.actions:
        action = msg.actions.add()
        if no_argument(a.kind):
            getattr(action, a.kind).SetInParent()
        elif a.kind == "controller":  # max_len 0: the default
            action.controller.SetInParent()
            action.controller.max_len = a.arg or 0  # type: ignore[assignment]
        else:
            setattr(action, a.kind, a.arg)
    c = view.counters
    if c.packets:
        msg.n_packets = c.packets
    if c.bytes:
        msg.n_bytes = c.bytes
    msg.duration_seconds = round(view.duration_seconds, 3)
    msg.idle_seconds = round(view.idle_seconds, 3)
    msg.revision = r.rule_id  # a rule never changes: its id is the revision of its addition


# ---- events -------------------------------------------------------------------------------------

KIND_TO_PB = {k: pb.EventKind.Value(f"EVENT_KIND_{k.upper()}") for k in KINDS}
KIND_FROM_PB = {v: k for k, v in KIND_TO_PB.items()}
_CHANGE = {"added": pb.CHANGE_ADDED, "removed": pb.CHANGE_REMOVED, "changed": pb.CHANGE_CHANGED}
_PORT_REASON = {"api": pb.PortEvent.API, "link-up": pb.PortEvent.LINK_UP,
                "link-down": pb.PortEvent.LINK_DOWN, "vanished": pb.PortEvent.VANISHED,
                "restored": pb.PortEvent.RESTORED, "container-gone": pb.PortEvent.CONTAINER_GONE}
_FLOW_REASON = {"": pb.FlowEvent.REASON_UNSPECIFIED, "idle-timeout": pb.FlowEvent.IDLE_TIMEOUT,
                "hard-timeout": pb.FlowEvent.HARD_TIMEOUT, "deleted": pb.FlowEvent.DELETED,
                "replaced": pb.FlowEvent.REPLACED}
_FDB_TYPE = {"learned": pb.FdbEvent.LEARNED, "moved": pb.FdbEvent.MOVED,
             "aged": pb.FdbEvent.AGED, "added": pb.FdbEvent.ADDED,
             "deleted": pb.FdbEvent.DELETED}
_DAEMON_TYPE = {"ready": pb.DaemonEvent.READY, "stopping": pb.DaemonEvent.STOPPING}


def event_kinds(values: Iterable[int]) -> list[str]:
    """SubscribeRequest.kinds as the switch's words (INVALID_ARGUMENT for an unknown one)."""
    out = []
    for v in values:
        if v not in KIND_FROM_PB:
            raise InvalidArgument("kinds", v, f"not an EventKind (known: "
                                  f"{', '.join(pb.EventKind.Name(k) for k in KIND_FROM_PB)})")
        out.append(KIND_FROM_PB[v])
    return out


def event_msg(ev: Event) -> pb.Event:
    msg = pb.Event(revision=ev.revision, time=ev.time, bridge=ev.bridge)
    obj: Any = ev.obj
    if ev.kind == "daemon":
        msg.daemon.type = _DAEMON_TYPE[ev.change]
        msg.daemon.version = str(obj)
    elif ev.kind == "bridge":
        msg.bridge_event.change = _CHANGE[ev.change]
        msg.bridge_event.bridge.CopyFrom(bridge_msg(obj))
    elif ev.kind == "port":
        msg.port.change = _CHANGE[ev.change]
        msg.port.reason = _PORT_REASON[ev.reason]
        msg.port.port.CopyFrom(port_msg(obj))
    elif ev.kind == "fdb":
        msg.fdb.type = _FDB_TYPE[ev.change]
        msg.fdb.entry.CopyFrom(fdb_msg(obj))
        if ev.old is not None:
            msg.fdb.old_port, msg.fdb.old_remote = ev.old
    elif ev.kind == "flow":
        msg.flow.change = _CHANGE[ev.change]
        msg.flow.reason = _FLOW_REASON[ev.reason]
        fill_flow(msg.flow.flow, obj)
    return msg


def lost_msg(lost: Lost) -> pb.Event:
    return pb.Event(revision=lost.last, lost=pb.LostEvents(
        count=lost.count, from_revision=lost.first, to_revision=lost.last))


# ---- tracing and watch ------------------------------------------------------------------------


def trace_output_msg(out: OutputTag) -> pb.TraceOutput:
    msg = pb.TraceOutput(port=out.port, tunnel_vni=out.tunnel_vni,
                         tunnel_remotes=out.tunnel_remotes)
    if out.tagged is not None:  # unset = not reported, distinct from untagged
        msg.tagged = out.tagged
        msg.vlan = out.vlan or 0
    return msg


def trace_msg(report: TraceReport) -> pb.TraceResponse:
    msg = pb.TraceResponse(verdict=report.verdict, outputs=list(report.outputs),
                           drop_reason=report.drop_reason,
                           output_tags=[trace_output_msg(o) for o in report.output_tags])
    for st in report.stages:
        stage = msg.stages.add(name=st.name, summary=st.summary, hook=st.hook)
        d = st.detail
        if isinstance(d, Headers):
            stage.headers.CopyFrom(pb.TraceHeaders(fields=match_msg(d.match), length=d.length,
                                                   truncated=d.truncated))
        elif isinstance(d, FlowTableStage):
            stage.flow_table.CopyFrom(pb.TraceFlowTable(
                table_miss=d.table_miss, priority=d.priority, cookie=d.cookie, match=d.match,
                actions=d.actions, n_rules=d.n_rules))
        elif isinstance(d, VlanStage):
            stage.vlan.CopyFrom(pb.TraceVlan(port_mode=d.port_mode, tagged=d.tagged,
                                             frame_vid=d.frame_vid, vlan=d.vlan,
                                             accepted=d.accepted))
        elif isinstance(d, L2Stage):
            stage.l2.CopyFrom(pb.TraceL2(
                dl_dst=d.dl_dst, multicast=d.multicast, fdb_hit=d.fdb_hit, port=d.port,
                flood=list(d.flood), output_tags=[trace_output_msg(o) for o in d.output_tags]))
        elif isinstance(d, VerdictStage):
            stage.final.CopyFrom(pb.TraceVerdict(
                verdict=d.verdict, outputs=list(d.outputs), drop_reason=d.drop_reason,
                output_tags=[trace_output_msg(o) for o in d.output_tags], handoff=d.handoff))
    return msg


def watch_event_msg(ev: EventView) -> pb.WatchMessage:
    return pb.WatchMessage(event=pb.WatchEvent(
        time=ev.time, bridge=ev.bridge, in_port=ev.in_port, dl_src=ev.dl_src, dl_dst=ev.dl_dst,
        dl_type=ev.dl_type, dl_vlan=ev.dl_vlan, ip_src=ev.ip_src, ip_dst=ev.ip_dst,
        nw_proto=ev.nw_proto, tp_src=ev.tp_src, tp_dst=ev.tp_dst, length=ev.length,
        cookie=ev.cookie, table_miss=ev.table_miss, verdict=ev.verdict,
        outputs=list(ev.outputs), drop_reason=ev.drop_reason, n_copies=ev.n_copies,
        hook=ev.hook))


def watch_lost_msg(n: int) -> pb.WatchMessage:
    return pb.WatchMessage(lost=n)


def watch_config_msg(config: dict[str, int]) -> pb.WatchConfig:
    return pb.WatchConfig(rate_limit=config["rate_limit"])


# ---- packet-in --------------------------------------------------------------------------------

_PACKET_IN_REASON = {REASON_ACTION: pb.PacketIn.ACTION, REASON_TABLE_MISS: pb.PacketIn.TABLE_MISS}


def packet_in_msg(v: PacketInView) -> pb.PacketInMessage:
    return pb.PacketInMessage(packet=pb.PacketIn(
        time=v.time, bridge=v.bridge, in_port=v.in_port, vlan=v.vlan, cookie=v.cookie,
        reason=_PACKET_IN_REASON[v.reason], data=v.data, total_len=v.total_len, hook=v.hook))


def packet_in_lost_msg(n: int) -> pb.PacketInMessage:
    return pb.PacketInMessage(lost=n)


def packet_in_config_msg(config: dict[str, int]) -> pb.PacketInConfig:
    return pb.PacketInConfig(**config)
