"""How vswctl's rows read as text: each result's layout (table columns, record, tree or lines),
the `show` tree, dump-flows, trace and watch lines.

Only rows (plain dicts, from `vswctl.rows`) come in; `vswctl.format` lays out tables and records.
"""

from __future__ import annotations

import time
from typing import Any

from vswapi import switch_pb2 as pb
from vswctl.format import Column, Row, View


def duration(seconds: float) -> str:
    """3725.2 -> '1h02m05s'; 90061 -> '1d01h01m01s'."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h:02d}h{m:02d}m{s:02d}s"
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


def _age(value: float, row: Row) -> str:
    return "static" if row["static"] else f"{value:.1f}"


def _vlan(value: int, row: Row) -> str:
    return str(value) if value else "-"  # 0 = untagged


def _count(value: list, row: Row) -> str:
    return str(len(value))


def _xdp(value: str, row: Row) -> str:
    """The XDP mode a port got; '(fallback)' when it got a mode for a reason (auto or native
    asked, generic given: `show` and -j say why)."""
    return f"{value}(fallback)" if value != "off" and row.get("xdp_reason") else value


def xdp_text(p: Row) -> str:
    """'native', 'generic (asked auto; driver veth has no native XDP)', 'off (asked native;
    ...)': what the port got, and what was asked and why when they differ."""
    mode, asked, reason = p["xdp_mode"], p["xdp"], p["xdp_reason"]
    notes = [f"asked {asked}"] if asked not in (mode, "default") and not (
        asked == "auto" and mode == "native") else []
    notes += [reason] if reason else []
    return mode + (f" ({'; '.join(notes)})" if notes else "")


def _ebpf_support(value: bool, row: Row) -> str:
    if value:
        return "supported"
    reason = row.get("ebpf_unsupported_reason")
    return f"unsupported: {reason}" if reason else "unsupported"


def show_tree(rows: list[Row]) -> list[str]:
    """`ovs-vsctl show`-like tree of bridges and their ports."""
    lines: list[str] = []
    for b in rows:
        lines.append(f"Bridge {b['name']}")
        lines.append(f"    datapath: {b['datapath']}")
        if b["addresses"]:
            lines.append(f"    addresses: {', '.join(b['addresses'])}")
        if b.get("nat"):
            lines.append("    nat: masquerade")
        for p in b["ports"]:
            lines.append(f"    Port {p['name']}")
            kind = p["type"] + (" (uplink)" if p.get("uplink") else "")
            kind += " (multi-queue)" if p.get("multi_queue") else ""
            lines.append(f"        type: {kind}")
            if p.get("vlan_mode", "all") != "all":
                lines.append(f"        vlan: {p['vlan_mode']}")
            if p.get("xdp_mode", "off") != "off" or p.get("xdp", "off") not in ("off",
                                                                                 "default"):
                lines.append(f"        xdp: {xdp_text(p)}")
            if p["state"]:
                lines.append(f"        state: {p['state']}")
            if p["netns"]:
                peer = f" (peer {p['peer_name']})" if p["peer_name"] else ""
                lines.append(f"        netns: {p['netns']}{peer}")
            if p["addresses"]:
                lines.append(f"        addresses: {', '.join(p['addresses'])}")
            if p.get("gateway"):
                lines.append(f"        gateway: {p['gateway']}")
            if p.get("uplink_addresses"):
                lines.append(f"        host addresses on the bridge: "
                             f"{', '.join(p['uplink_addresses'])}")
            if p.get("vni"):  # a tunnel
                local = f", local {p['local']}" if p.get("local") else ""
                lines.append(f"        vxlan: vni {p['vni']}{local}, udp port {p['dstport']}")
                lines.append(f"        remote VTEPs: {', '.join(p['remotes']) or 'none'}")
            for key in ("mac", "mtu", "owner"):
                if p[key]:
                    lines.append(f"        {key}: {p[key]}")
            if p.get("labels"):
                lines.append("        labels: " + ", ".join(f"{k}={v}"
                                                           for k, v in p["labels"].items()))
    return lines


def flow_lines(rows: list[Row]) -> list[str]:
    """`ovs-ofctl dump-flows`-like lines: counters, then the rule as add-flow reads it."""
    lines = []
    for r in rows:
        stats = [f"cookie={r['cookie']}", f"duration={r['duration']:.1f}s",
                 f"n_packets={r['n_packets']}", f"n_bytes={r['n_bytes']}"]
        if r["idle_timeout"]:
            stats.append(f"idle_timeout={r['idle_timeout']}")
        if r["hard_timeout"]:
            stats.append(f"hard_timeout={r['hard_timeout']}")
        stats.append(f"idle_age={int(r['idle_age'])}")
        rule = ",".join([f"priority={r['priority']}"] + ([r["match"]] if r["match"] else []))
        lines.append(f" {', '.join(stats)}, {rule} actions={r['actions']}")
    return lines


PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6"}


def _action_target(port: str, tags: dict[str, Row]) -> str:
    """An output in the `Datapath actions` line: PORT, or PORT(vid=N) when it leaves tagged
    (untagged is the norm, as ofproto/trace shows push_vlan only where a tag is pushed)."""
    tag = tags.get(port) or {}
    args = [f"vid={tag['vlan']}"] if tag.get("tagged") else []
    if tag.get("tunnel_vni"):  # the tunnel key: VNI and the remote VTEP(s)
        args.append(f"vni={tag['tunnel_vni']}")
        args += [f"remote={r}" for r in tag["tunnel_remotes"]]
    return f"{port}({','.join(args)})" if args else port


def sent_lines(rows: list[Row]) -> list[str]:
    """send-packet: '60 bytes out of c1', '60 bytes into br0 from c1'."""
    return [f"{r['length']} bytes out of {r['out_port']}" if r["out_port"] else
            f"{r['length']} bytes into {r['bridge']} from {r['in_port']}" for r in rows]


def trace_lines(rows: list[Row]) -> list[str]:
    """`ovs-appctl ofproto/trace`-like: the flow, the bridge, numbered stages, the verdict."""
    lines: list[str] = []
    for r in rows:
        lines.append(f"Flow: {r['packet']}")
        lines.append("")
        title = f'bridge("{r["bridge"]}")'
        lines += [title, "-" * len(title)]
        # the hook of each stage, once a frame meets XDP (TC alone is the usual case)
        hooks = any(st.get("hook") not in ("tc", "", None) for st in r["stages"])
        for n, st in enumerate(r["stages"], 1):
            hook = f"[{st['hook']}] " if hooks else ""
            lines.append(f"{n:2d}. {hook}{st['name']}: {st['summary']}")
        lines.append("")
        if r["verdict"] == "drop":
            lines.append(f"Datapath actions: drop ({r['drop_reason']})")
        elif r["outputs"]:
            tags = {t["port"]: t for t in r.get("output_tags", [])}
            targets = ",".join(_action_target(p, tags) for p in r["outputs"])
            lines.append(f"Datapath actions: {r['verdict']} to {targets}")
        else:
            lines.append(f"Datapath actions: {r['verdict']}")
    return lines


def _clock(t: float) -> str:
    lt = time.localtime(t)
    return time.strftime("%H:%M:%S", lt) + f".{int((t % 1) * 1e6):06d}"


def watch_line(r: Row) -> str:
    """One decision: time bridge in_port src > dst [vlan] ips proto ports length cookie verdict."""
    in_port = r["in_port"] + (" [xdp]" if r.get("hook") == "xdp" else "")  # TC: the usual
    parts = [_clock(r["time"]), r["bridge"], in_port, f"{r['dl_src']} > {r['dl_dst']}"]
    if r["dl_vlan"]:
        parts.append(f"vlan {r['dl_vlan']}")
    proto = PROTO_NAMES.get(r["nw_proto"], f"proto {r['nw_proto']}") if r["ip_src"] else ""
    if r["ip_src"]:
        if r["nw_proto"] in (6, 17):
            parts.append(f"{r['ip_src']}:{r['tp_src']} > {r['ip_dst']}:{r['tp_dst']} {proto}")
        else:
            parts.append(f"{r['ip_src']} > {r['ip_dst']} {proto}")
    else:
        parts.append(f"type {r['dl_type']}")
    parts.append(f"len {r['length']}")
    parts.append("table-miss" if r["table_miss"] else f"cookie {r['cookie']}")
    if r["verdict"] == "drop":
        parts.append(f"drop ({r['drop_reason']})")
    elif r["verdict"] == "flood":
        parts.append(f"flood ({r['n_copies']} copies)"
                     + (f" {','.join(r['outputs'])}" if r["outputs"] else ""))
    elif r["outputs"]:
        parts.append(f"{r['verdict']} {','.join(r['outputs'])}")
    else:
        parts.append(r["verdict"])
    return " ".join(parts)


def event_line(msg: pb.Event) -> str:
    """One event: time, revision, kind and change, bridge, what changed, why."""
    kind = msg.WhichOneof("kind")
    if kind == "lost":
        lost = msg.lost
        return (f"lost {lost.count} events (revisions {lost.from_revision}.."
                f"{lost.to_revision}): resync with list commands")
    head = [_clock(msg.time), f"rev {msg.revision}"]
    if kind == "daemon":
        return " ".join([*head, "daemon", _word(pb.DaemonEvent.Type, msg.daemon.type),
                         msg.daemon.version])
    if kind == "bridge_event":
        b = msg.bridge_event
        return " ".join([*head, "bridge", _word(pb.Change, b.change, "CHANGE_"), b.bridge.name])
    if kind == "port":
        p = msg.port
        return " ".join([*head, "port", _word(pb.Change, p.change, "CHANGE_"), msg.bridge,
                         p.port.name, f"state {p.port.state}",
                         f"({_word(pb.PortEvent.Reason, p.reason)})"])
    if kind == "fdb":
        f = msg.fdb
        where = f"on {f.entry.port}" + (f" via {f.entry.remote}" if f.entry.remote else "")
        if f.old_port:
            where += f" (was {f.old_port})"
        return " ".join([*head, "fdb", _word(pb.FdbEvent.Type, f.type), msg.bridge,
                         f.entry.mac, f"vlan {f.entry.vlan}", where])
    from vswapi.flowspec import format_flow

    fl = msg.flow
    parts = [*head, "flow", _word(pb.Change, fl.change, "CHANGE_"), msg.bridge,
             format_flow(fl.flow)]
    if fl.reason:
        parts.append(f"({_word(pb.FlowEvent.Reason, fl.reason)})")
    return " ".join(parts)


def _word(enum: Any, value: int, prefix: str = "") -> str:
    return enum.Name(value).removeprefix(prefix).lower().replace("_", "-")


def headers_text(h: Row) -> str:
    """'02:..:01 > ff:..:ff arp request 10.0.0.1 > 10.0.0.2', '... 10.0.0.1:53 > ... udp'."""
    if not h:
        return "(no Ethernet header)"
    parts = [f"{h['dl_src']} > {h['dl_dst']}"]
    if h.get("dl_vlan") is not None:
        parts.append(f"vlan {h['dl_vlan']}")
    if "arp_op" in h:
        parts.append(f"arp {h['arp_op']} {h['ip_src']} > {h['ip_dst']}")
    elif "ip_src" in h:
        proto = PROTO_NAMES.get(h["nw_proto"], f"proto {h['nw_proto']}")
        if "tp_src" in h:
            parts.append(f"{h['ip_src']}:{h['tp_src']} > {h['ip_dst']}:{h['tp_dst']} {proto}")
        else:
            parts.append(f"{h['ip_src']} > {h['ip_dst']} {proto}")
    elif "dl_type" in h:
        parts.append(f"type 0x{h['dl_type']:04x}")
    return " ".join(parts)


def packet_in_line(r: Row) -> str:
    """One packet-in: time bridge in_port [vlan] cookie reason length, then its headers."""
    parts = [_clock(r["time"]), r["bridge"], r["in_port"]]
    if r["vlan"]:
        parts.append(f"vlan {r['vlan']}")
    parts.append(f"cookie {r['cookie']} {r['reason']}")
    cut = f" ({r['data_len']} sent)" if r["data_len"] < r["total_len"] else ""
    parts.append(f"len {r['total_len']}{cut}")
    parts.append(headers_text(r["headers"]))
    return " ".join(parts)


def _packet_ins(c: Row | None, row: Row) -> str:
    if not c:
        return "-"
    return (f"{c['sent']} sent, {c['rate_limited']} rate-limited, {c['ring_full']} ring-full, "
            f"{c['unwatched']} unwatched")


# ---------------------------------------------------------------- layouts, one per kind of result

QUIET = View(style="quiet", single=True)  # write commands: nothing, or the written row with -j
STATUS = View(columns=[
    Column("version", "version"),
    Column("uptime_seconds", "uptime", lambda v, r: duration(v)),
    Column("kernel", "kernel"),
    Column("default_datapath", "default datapath"),
    Column("ebpf_supported", "ebpf datapath", _ebpf_support),
    Column("fdb_aging_seconds", "fdb aging", lambda v, r: f"{v}s"),
    Column("watch_rate_limit", "watch rate limit",
           lambda v, r: f"{v} events/s per CPU" if v else "-"),
    Column("packet_in_rate_limit", "packet-in rate",  # labels within the widest, as before
           lambda v, r: f"{v} packet-ins/s per CPU" if v else "-"),
    Column("packet_in", "packet-ins", _packet_ins),
], style="record", single=True)
BRIDGES = View(columns=[
    Column("name", "NAME"),
    Column("datapath", "DATAPATH"),
    Column("ifindex", "IFINDEX", right=True),
    Column("ports", "PORTS", _count, right=True),
    Column("nat", "NAT"),
    Column("addresses", "ADDRESSES"),
])
SHOW = View(style="tree", text=show_tree)
PORTS = View(columns=[
    Column("name", "NAME"),
    Column("type", "TYPE"),
    Column("state", "STATE"),
    Column("ifindex", "IFINDEX", right=True),
    Column("vlan_mode", "VLAN"),
    Column("xdp_mode", "XDP", _xdp),
    Column("netns", "NETNS"),
    Column("peer_name", "PEER"),
    Column("addresses", "ADDRESSES"),
])
FDB = View(columns=[
    Column("port", "PORT"),
    Column("vlan", "VLAN", _vlan, right=True),
    Column("mac", "MAC"),
    Column("age", "AGE", _age, right=True),
    Column("remote", "REMOTE", lambda v, r: v or "-", optional=True),  # tunnel ports' VTEP
])
VTEPS = View(columns=[
    Column("bridge", "BRIDGE"),
    Column("port", "PORT"),
    Column("vni", "VNI", right=True),
    Column("address", "VTEP"),
])
STATS = View(columns=[
    Column("port", "PORT"),
    Column("rx_packets", "RX_PACKETS", right=True),
    Column("rx_bytes", "RX_BYTES", right=True),
    Column("tx_packets", "TX_PACKETS", right=True),
    Column("tx_bytes", "TX_BYTES", right=True),
    Column("drops", "DROPS", right=True),
    Column("xdp_finished", "XDP", right=True),
    Column("xdp_handoffs", "XDP_TO_TC", right=True),
    Column("drops_by_reason", "DROP_REASONS"),
])
DROPS = View(columns=[
    Column("port", "PORT"),
    Column("reason", "REASON"),
    Column("count", "COUNT", right=True),
])
FLOWS = View(style="lines", text=flow_lines)
TRACE = View(style="lines", text=trace_lines, single=True)
SENT = View(style="lines", text=sent_lines, single=True)
