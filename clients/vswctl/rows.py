"""Replies as rows: each protobuf message of the API converted once into a plain dict.

The rows are what `-j` prints and what the tables and trees are rendered from. Lists of rows come
sorted the way the commands print them. `vswapi.flowspec` is imported by the conversions of flows
and traces, not when vswctl starts.
"""

from __future__ import annotations

from collections.abc import Iterable

from vswapi import switch_pb2 as pb
from vswapi.enums import enum_words
from vswapi.vlanmode import vlan_mode_text
from vswctl.format import Row

# Enums are printed as lower-case words; a value this client does not know stays visible.
DATAPATH_NAMES = {pb.DATAPATH_UNSPECIFIED: "default",
                  **{v: k for k, v in enum_words(pb.Datapath, "DATAPATH_").items()}}
PORT_TYPE_NAMES = {pb.PORT_TYPE_UNSPECIFIED: "veth",  # the proto's documented default
                   **{v: k for k, v in enum_words(pb.PortType, "PORT_TYPE_").items()}}
XDP_NAMES = {pb.XDP_MODE_UNSPECIFIED: "default",  # the port type's (replies name it)
             **{v: k for k, v in enum_words(pb.XdpMode, "XDP_").items()}}


def datapath_name(value: int) -> str:
    return DATAPATH_NAMES.get(value, f"unknown({value})")


def port_type_name(value: int) -> str:
    return PORT_TYPE_NAMES.get(value, f"unknown({value})")


def xdp_name(value: int) -> str:
    return XDP_NAMES.get(value, f"unknown({value})")


def status_row(s: pb.Status, packet_in: pb.PacketInConfig | None = None) -> Row:
    """PACKET_IN: the daemon's packet-in settings and counters (None: it has none)."""
    row: Row = {
        "version": s.version,
        "uptime_seconds": round(s.uptime_seconds, 3),
        "kernel": s.kernel,
        "default_datapath": datapath_name(s.default_datapath),
        "ebpf_supported": s.ebpf_supported,
        "ebpf_unsupported_reason": s.ebpf_unsupported_reason,
        "fdb_aging_seconds": s.fdb_aging_seconds,
        "watch_rate_limit": s.watch_rate_limit,   # 0: the daemon did not say (older daemon)
    }
    if packet_in is not None:
        row["packet_in_rate_limit"] = packet_in.rate_limit
        row["packet_in"] = packet_in_counters_row(packet_in)
    return row


def packet_in_counters_row(c: pb.PacketInConfig) -> Row:
    return {"sent": c.sent, "rate_limited": c.rate_limited, "ring_full": c.ring_full,
            "unwatched": c.unwatched}


_PACKET_IN_REASONS = {pb.PacketIn.ACTION: "action", pb.PacketIn.TABLE_MISS: "table-miss"}


def packet_in_row(p: pb.PacketIn) -> Row:
    """The packet-in, its frame as hex (data) and the headers decoded from it."""
    from vswapi.headers import decode

    return {
        "time": round(p.time, 6),
        "bridge": p.bridge,
        "in_port": p.in_port,
        "vlan": p.vlan,
        "cookie": f"0x{p.cookie:x}",
        "reason": _PACKET_IN_REASONS.get(p.reason, f"unknown({p.reason})"),
        "total_len": p.total_len,
        "data_len": len(p.data),
        "data": p.data.hex(),
        "hook": p.hook,
        "headers": decode(p.data),
    }


def bridge_row(b: pb.Bridge) -> Row:
    return {
        "name": b.name,
        "datapath": datapath_name(b.datapath),
        "addresses": list(b.addresses),
        "nat": b.nat,
        "ifindex": b.ifindex,
        "mac": b.mac,
        "ports": [p.name for p in b.ports],
        "revision": b.revision,
    }


def bridge_rows(bridges: Iterable[pb.Bridge]) -> list[Row]:
    return sorted((bridge_row(b) for b in bridges), key=lambda b: b["name"])


def show_rows(bridges: Iterable[pb.Bridge]) -> list[Row]:
    """Bridge rows whose "ports" are the port rows themselves (the `show` tree)."""
    rows = []
    for b in sorted(bridges, key=lambda b: b.name):
        row = bridge_row(b)
        row["ports"] = port_rows(b.ports)
        rows.append(row)
    return rows


def port_row(p: pb.Port) -> Row:
    return {
        "name": p.name,
        "bridge": p.bridge,
        "type": port_type_name(p.type),
        "netns": p.netns,
        "peer_name": p.peer_name,
        "addresses": list(p.addresses),
        "mac": p.mac,
        "mtu": p.mtu,
        "owner": p.owner,
        "ifindex": p.ifindex,
        "netns_created": p.netns_created,
        "state": p.state,
        "vlan_mode": vlan_mode_text(p.vlan, p.trunks, p.native_vlan),
        "vlan": p.vlan,
        "trunks": sorted(p.trunks),
        "native_vlan": p.native_vlan,
        "gateway": p.gateway,
        "uplink": p.uplink,
        "uplink_addresses": list(p.uplink_addresses),
        "multi_queue": p.multi_queue,
        "xdp": xdp_name(p.xdp),           # asked (the mode in force for the port)
        "xdp_mode": p.xdp_mode or "off",  # what it got ("" from a daemon without XDP)
        "xdp_reason": p.xdp_reason,       # why it fell back, or why it is off
        "vni": p.vni,                     # vxlan: the tunnel
        "local": p.local,
        "dstport": p.dstport,
        "remotes": list(p.remotes),
        "labels": dict(sorted(p.labels.items())),
        "revision": p.revision,
    }


def port_rows(ports: Iterable[pb.Port]) -> list[Row]:
    return sorted((port_row(p) for p in ports), key=lambda p: p["name"])


def fdb_row(e: pb.FdbEntry) -> Row:
    return {
        "mac": e.mac,
        "port": e.port,
        "vlan": e.vlan,
        "static": e.static,
        "age": 0.0 if e.static else round(e.age_seconds, 3),
        "remote": e.remote,
        "revision": e.revision,
    }


def vtep_row(v: pb.Vtep) -> Row:
    return {"bridge": v.bridge, "port": v.port, "address": v.address, "vni": v.vni}


def fdb_rows(entries: Iterable[pb.FdbEntry]) -> list[Row]:
    return sorted((fdb_row(e) for e in entries), key=lambda e: (e["vlan"], e["mac"]))


def stats_row(s: pb.PortStats) -> Row:
    return {
        "port": s.port,
        "rx_packets": s.rx_packets,
        "rx_bytes": s.rx_bytes,
        "tx_packets": s.tx_packets,
        "tx_bytes": s.tx_bytes,
        "drops": s.drops,
        "drops_by_reason": dict(sorted(s.drops_by_reason.items())),
        "xdp_finished": s.xdp_finished,
        "xdp_handoffs": s.xdp_handoffs,
    }


def stats_rows(stats: Iterable[pb.PortStats]) -> list[Row]:
    return sorted((stats_row(s) for s in stats), key=lambda s: s["port"])


def drop_rows(stats: Iterable[pb.PortStats]) -> list[Row]:
    """One row per port and drop reason that counted something."""
    return [{"port": s.port, "reason": reason, "count": count}
            for s in sorted(stats, key=lambda s: s.port)
            for reason, count in sorted(s.drops_by_reason.items()) if count]


def flow_rows(flows: Iterable[pb.Flow]) -> list[Row]:
    """Highest priority first; flows of one priority keep the daemon's order."""
    from vswapi.flowspec import DEFAULT_PRIORITY, format_actions, format_match

    rows = [{
        "priority": f.priority if f.HasField("priority") else DEFAULT_PRIORITY,
        "cookie": f"0x{f.cookie:x}",
        "match": format_match(f.match),
        "actions": format_actions(f.actions),
        "n_packets": f.n_packets,
        "n_bytes": f.n_bytes,
        "duration": round(f.duration_seconds, 3),
        "idle_age": round(f.idle_seconds, 3),
        "idle_timeout": f.idle_timeout,
        "hard_timeout": f.hard_timeout,
        "revision": f.revision,
    } for f in flows]
    return sorted(rows, key=lambda f: -f["priority"])


def trace_output_row(o: pb.TraceOutput) -> Row:
    """{"port", "tagged", "vlan"[, "tunnel_vni", "tunnel_remotes"]}: vlan is the VID when
    tagged, else None; tagged is None when the daemon did not report the output's tag state;
    the tunnel key only for a tunnel port."""
    tagged = o.tagged if o.HasField("tagged") else None
    row: Row = {"port": o.port, "tagged": tagged, "vlan": o.vlan if tagged else None}
    if o.tunnel_vni:
        row.update(tunnel_vni=o.tunnel_vni, tunnel_remotes=list(o.tunnel_remotes))
    return row


def _detail_value(value: object) -> object:
    if isinstance(value, pb.FlowMatch):
        from vswapi.flowspec import format_match

        return format_match(value)
    if isinstance(value, pb.TraceOutput):
        return trace_output_row(value)
    if hasattr(value, "DESCRIPTOR"):
        return {f.name: _detail_value(getattr(value, f.name)) for f in value.DESCRIPTOR.fields}
    if isinstance(value, str | int | float | bool):
        return value
    return [_detail_value(v) for v in value]  # repeated


def trace_stage_row(s: pb.TraceStage) -> Row:
    kind = s.WhichOneof("detail")
    details = _detail_value(getattr(s, kind)) if kind else {}
    return {"name": s.name, "hook": s.hook, "summary": s.summary, "details": details}


def trace_row(bridge: str, packet: str, r: pb.TraceResponse) -> Row:
    return {
        "bridge": bridge,
        "packet": packet,
        "stages": [trace_stage_row(s) for s in r.stages],
        "verdict": r.verdict,
        "outputs": list(r.outputs),
        "drop_reason": r.drop_reason,
        "output_tags": [trace_output_row(o) for o in r.output_tags],
    }


def watch_event_row(e: pb.WatchEvent) -> Row:
    return {
        "time": round(e.time, 6),
        "bridge": e.bridge,
        "in_port": e.in_port,
        "dl_src": e.dl_src,
        "dl_dst": e.dl_dst,
        "dl_type": f"0x{e.dl_type:04x}",
        "dl_vlan": e.dl_vlan,
        "ip_src": e.ip_src,
        "ip_dst": e.ip_dst,
        "nw_proto": e.nw_proto,
        "tp_src": e.tp_src,
        "tp_dst": e.tp_dst,
        "length": e.length,
        "cookie": f"0x{e.cookie:x}",
        "table_miss": e.table_miss,
        "verdict": e.verdict,
        "outputs": list(e.outputs),
        "drop_reason": e.drop_reason,
        "n_copies": e.n_copies,
        "hook": e.hook,
    }
