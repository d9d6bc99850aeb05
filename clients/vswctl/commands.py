"""vswctl's handlers: each builds its request from the parsed arguments, calls the daemon and
returns the reply as rows (`vswctl.rows`). What the commands are and how their rows read is the
command table's (`vswctl.main`).

`vswapi.flowspec` is imported by the handlers that parse flows, not when vswctl starts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vswapi import switch_pb2 as pb
from vswapi.enums import enum_words
from vswctl import rows
from vswctl.daemon import Daemon
from vswctl.format import Row
from vswctl.render import event_line, packet_in_line, watch_line
from vswctl.unary import CallError, Code

DATAPATH_VALUES = enum_words(pb.Datapath, "DATAPATH_")
PORT_TYPE_VALUES = enum_words(pb.PortType, "PORT_TYPE_")
XDP_VALUES = enum_words(pb.XdpMode, "XDP_")


class InputError(Exception):
    """Bad input found before anything was sent to the daemon (exit 1); one message a line."""

    def __init__(self, messages: list[str]):
        super().__init__("\n".join(messages))
        self.messages = messages


class Refusal(CallError):
    """A daemon refusal whose message was rewritten for the user (`flow N` -> `FILE:LINE`)."""


# ---------------------------------------------------------------- daemon, bridges, ports, fdb

def cmd_status(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    st = c.stub.GetStatus(pb.GetStatusRequest(), timeout=t)
    try:
        packet_in = c.stub.GetPacketInConfig(pb.GetPacketInConfigRequest(), timeout=t)
    except CallError as exc:
        if exc.code() != Code.UNIMPLEMENTED:  # a daemon without packet-in: no line
            raise
        packet_in = None
    return [rows.status_row(st, packet_in)]


def cmd_shutdown(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """Stop the daemon; the datapath keeps forwarding unless --cleanup removes everything."""
    c.stub.Shutdown(pb.ShutdownRequest(cleanup=a.cleanup), timeout=t)
    return []


def cmd_add_br(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    bridge = pb.Bridge(name=a.bridge, addresses=a.ip or [], nat=a.nat)
    if a.datapath:
        bridge.datapath = DATAPATH_VALUES[a.datapath]
    b = c.stub.CreateBridge(pb.CreateBridgeRequest(bridge=bridge, may_exist=a.may_exist),
                            timeout=t)
    return [rows.bridge_row(b)]


def cmd_del_br(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.DeleteBridge(pb.DeleteBridgeRequest(name=a.bridge, if_exists=a.if_exists),
                            timeout=t)
    return [{"name": a.bridge, "deleted": r.deleted}]


def cmd_list_br(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.ListBridges(pb.ListBridgesRequest(), timeout=t)
    return rows.bridge_rows(r.bridges)


def cmd_show(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    if a.bridge:
        bridges = [c.stub.GetBridge(pb.GetBridgeRequest(name=a.bridge), timeout=t)]
    else:
        bridges = list(c.stub.ListBridges(pb.ListBridgesRequest(), timeout=t).bridges)
    return rows.show_rows(bridges)


def cmd_add_port(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    port = pb.Port(
        name=a.port,
        bridge=a.bridge,
        type=PORT_TYPE_VALUES[a.type],
        netns=a.netns or "",
        peer_name=a.peer_name or "",
        addresses=a.ip or [],
        mac=a.mac or "",
        mtu=a.mtu or 0,
        owner=a.owner or "",
        vlan=a.vlan or 0,
        trunks=a.trunks or [],
        native_vlan=a.native_vlan or 0,
        gateway=a.gateway or "",
        uplink=a.uplink,
        multi_queue=a.multi_queue,
        xdp=XDP_VALUES[a.xdp] if a.xdp else pb.XDP_MODE_UNSPECIFIED,
        vni=a.vni or 0,
        local=a.local or "",
        dstport=a.dstport or 0,
        remotes=a.remote or [],
        labels=dict(a.label or []),
    )
    p = c.stub.CreatePort(pb.CreatePortRequest(port=port, may_exist=a.may_exist), timeout=t)
    return [rows.port_row(p)]


def cmd_set_port(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """The VLAN mode is replaced as a whole: --vlan N, --trunks LIST [--native-vlan N], or
    --no-vlan (carry every VLAN again); --xdp MODE sets the XDP mode, alone or with them."""
    vlan = a.vlan is not None or a.trunks is not None or a.no_vlan
    remotes = a.remote is not None or a.no_remotes
    if not vlan and a.xdp is None and not remotes:
        raise InputError(["set-port: one of the arguments --vlan --trunks --no-vlan --xdp "
                          "--remote --no-remotes is required"])
    if a.native_vlan is not None and not vlan:
        raise InputError(["set-port: --native-vlan goes with --trunks"])
    port = pb.Port(name=a.port, bridge=a.bridge, vlan=a.vlan or 0, trunks=a.trunks or [],
                   native_vlan=a.native_vlan or 0,
                   xdp=XDP_VALUES[a.xdp] if a.xdp else pb.XDP_MODE_UNSPECIFIED,
                   remotes=a.remote or [])
    req = pb.UpdatePortRequest(port=port)
    if remotes:
        req.update_mask.paths.append("remotes")
    if vlan:
        req.update_mask.paths.extend(["vlan", "trunks", "native_vlan"])
    if a.xdp is not None:
        req.update_mask.paths.append("xdp")
    p = c.stub.UpdatePort(req, timeout=t)
    return [rows.port_row(p)]


def cmd_set_br(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    addresses = a.ip is not None or a.no_ip
    if not addresses and a.nat is None:
        raise InputError(["set-br: one of the arguments --ip --no-ip --nat --no-nat is "
                          "required"])
    req = pb.UpdateBridgeRequest(bridge=pb.Bridge(name=a.bridge, nat=bool(a.nat),
                                                  addresses=a.ip or []))
    if addresses:
        req.update_mask.paths.append("addresses")
    if a.nat is not None:
        req.update_mask.paths.append("nat")
    b = c.stub.UpdateBridge(req, timeout=t)
    return [rows.bridge_row(b)]


def cmd_del_port(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.DeletePortRequest(bridge=a.bridge, name=a.port, if_exists=a.if_exists)
    r = c.stub.DeletePort(req, timeout=t)
    return [{"bridge": a.bridge, "name": a.port, "deleted": r.deleted}]


def cmd_list_ports(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.ListPorts(pb.ListPortsRequest(bridge=a.bridge), timeout=t)
    return rows.port_rows(r.ports)


def cmd_dump_fdb(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.ListFdbEntries(pb.ListFdbEntriesRequest(bridge=a.bridge), timeout=t)
    return rows.fdb_rows(r.entries)


def cmd_add_fdb(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    entry = pb.FdbEntry(mac=a.mac, port=a.port, vlan=a.vlan, static=True,
                        remote=a.remote or "")
    e = c.stub.CreateFdbEntry(pb.CreateFdbEntryRequest(bridge=a.bridge, entry=entry), timeout=t)
    return [rows.fdb_row(e)]


def cmd_del_fdb(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.DeleteFdbEntryRequest(bridge=a.bridge, mac=a.mac, vlan=a.vlan,
                                   if_exists=a.if_exists)
    r = c.stub.DeleteFdbEntry(req, timeout=t)
    return [{"bridge": a.bridge, "mac": a.mac, "vlan": a.vlan, "deleted": r.deleted}]


def cmd_add_vtep(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    vtep = pb.Vtep(bridge=a.bridge, port=a.port, address=a.address)
    v = c.stub.CreateVtep(pb.CreateVtepRequest(vtep=vtep, may_exist=a.may_exist), timeout=t)
    return [rows.vtep_row(v)]


def cmd_del_vtep(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    vtep = pb.Vtep(bridge=a.bridge, port=a.port, address=a.address)
    r = c.stub.DeleteVtep(pb.DeleteVtepRequest(vtep=vtep, if_exists=a.if_exists), timeout=t)
    return [{"bridge": a.bridge, "port": a.port, "address": a.address, "deleted": r.deleted}]


def cmd_list_vteps(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.ListVtepsRequest(bridge=a.bridge or "", port=a.port or "")
    return [rows.vtep_row(v) for v in c.stub.ListVteps(req, timeout=t).vteps]


def cmd_port_stats(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.GetPortStatsRequest(bridge=a.bridge, port=a.port or "")
    r = c.stub.GetPortStats(req, timeout=t)
    return rows.stats_rows(r.stats)


# ---------------------------------------------------------------- flows

MAX_REPORTED_ERRORS = 20
_FLOW_N = re.compile(r"^flow (\d+): ")


def read_flows(path: str, flows: Any) -> Sequence[str]:
    """Append the rules of a flow file ('-' = stdin) to FLOWS (a request's repeated Flow
    field, filled in place); return where each came from ("FILE:LINE").

    One rule a line; blank lines and lines starting with '#' are skipped. Every line is parsed
    before anything is sent: any bad line raises InputError listing the bad lines.
    """
    from vswapi.flowspec import FlowSyntaxError, parse_flow_into

    name = "<stdin>" if path == "-" else path
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        raise InputError([f"{name}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise InputError([f"{name}: not a text file ({exc.reason})"]) from None
    lines: list[int] = []
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] == "#":
            continue
        try:
            parse_flow_into(flows.add(), line)
            lines.append(number)
        except FlowSyntaxError as exc:
            del flows[-1]
            errors.append(f"{name}:{number}: {exc}")
    if errors:
        more = len(errors) - MAX_REPORTED_ERRORS
        if more > 0:
            errors = errors[:MAX_REPORTED_ERRORS] + [f"{name}: ... and {more} more bad lines"]
        raise InputError(errors)
    return _Where(name, lines)


class _Where:
    """where[N-1] is "FILE:LINE" of flow N (made when asked: only an error needs one)."""

    def __init__(self, name: str, lines: list[int]) -> None:
        self._name, self._lines = name, lines

    def __len__(self) -> int:
        return len(self._lines)

    def __getitem__(self, i: int) -> str:
        return f"{self._name}:{self._lines[i]}"


def _locate(exc: CallError, where: Sequence[str]) -> CallError:
    """Rewrite the daemon's `flow N: ...` (N from 1, in request order) to `FILE:LINE: ...`.

    where[N-1] is the location of flow N; an empty location just drops the prefix (add-flow).
    """
    details = exc.details()
    m = _FLOW_N.match(details)
    if not m or not 1 <= int(m.group(1)) <= len(where):
        return exc
    location = where[int(m.group(1)) - 1]
    rest = details[m.end():]
    return Refusal(exc.code(), f"{location}: {rest}" if location else rest)


def _batch(call, request, where: Sequence[str], t: float):
    try:
        return call(request, timeout=t)
    except CallError as exc:
        located = _locate(exc, where)
        if located is exc:
            raise
        raise located from exc


def _parsed(parse: Callable[[str], Any], text: str) -> Any:
    """parse(text), a FlowSyntaxError turned into the usage error that names it."""
    from vswapi.flowspec import FlowSyntaxError

    try:
        return parse(text)
    except FlowSyntaxError as exc:
        raise InputError([str(exc)]) from None


def _add_flows(c: Daemon, req: pb.AddFlowsRequest, where: Sequence[str],
               t: float) -> list[Row]:
    r = _batch(c.stub.AddFlows, req, where, t)
    return [{"added": r.added, "replaced": r.replaced}]


def cmd_add_flow(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    from vswapi.flowspec import parse_flow

    flow = _parsed(parse_flow, a.flow)
    return _add_flows(c, pb.AddFlowsRequest(bridge=a.bridge, flows=[flow]), [""], t)


def cmd_add_flows(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.AddFlowsRequest(bridge=a.bridge)
    return _add_flows(c, req, read_flows(a.file, req.flows), t)


def cmd_replace_flows(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    req = pb.ReplaceFlowsRequest(bridge=a.bridge)
    where = read_flows(a.file, req.flows)
    r = _batch(c.stub.ReplaceFlows, req, where, t)
    return [{"added": r.added, "removed": r.removed, "unchanged": r.unchanged}]


def cmd_del_flows(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    from vswapi.flowspec import parse_match_spec

    spec = _parsed(parse_match_spec, a.match or "")
    if spec.priority is not None and not a.strict:
        raise InputError([f"priority={spec.priority} needs --strict "
                          "(a loose delete ignores priority)"])
    r = c.stub.DeleteFlows(spec.delete_request(a.bridge, strict=a.strict), timeout=t)
    return [{"deleted": r.deleted}]


def cmd_dump_flows(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.ListFlows(pb.ListFlowsRequest(bridge=a.bridge), timeout=t)
    return rows.flow_rows(r.flows)


# ---------------------------------------------------------------- trace, watch, drops

def cmd_trace(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    from vswapi.flowspec import format_match, parse_match

    packet = _parsed(parse_match, a.packet)
    req = pb.TraceRequest(bridge=a.bridge, packet=packet, truncate=a.truncate or 0)
    r = c.stub.Trace(req, timeout=t)
    return [rows.trace_row(a.bridge, format_match(packet), r)]


_HEX_SEPARATORS = re.compile(r"[\s:.-]")


def frame_bytes(text: str) -> bytes | None:
    """TEXT as a frame in hex (optional 0x; ':', '.', '-' or blanks between bytes allowed), or
    None when it is not hex (then it is a packet spec)."""
    digits = _HEX_SEPARATORS.sub("", text.removeprefix("0x"))
    if not digits or not re.fullmatch(r"[0-9a-fA-F]+", digits):
        return None
    if len(digits) % 2:
        raise InputError([f"frame {text[:40]!r}: an odd number of hex digits (two a byte)"])
    return bytes.fromhex(digits)


def _not_hex(text: str) -> str:
    """Why TEXT is no hex frame: its first character that is not a hex digit."""
    body = text.removeprefix("0x")
    bad = next((c for c in body if not re.fullmatch(r"[0-9a-fA-F\s:.-]", c)), "")
    return f"{bad!r} is not a hex digit" if bad else "no hex digits"


def packet_frame(text: str) -> bytes | pb.FlowMatch:
    """The frame of `send-packet`: hex bytes, or header values in the trace syntax."""
    from vswapi.flowspec import FlowSyntaxError, parse_match

    data = frame_bytes(text)
    if data is not None:
        return data
    try:
        return parse_match(text)
    except FlowSyntaxError as exc:
        if "=" in text or "," in text:  # meant as header values
            raise InputError([str(exc)]) from None
        raise InputError([f"frame {text[:40]!r}: neither hex ({_not_hex(text)}) nor header "
                          f"values in the trace syntax ({exc})"]) from None


def cmd_send_packet(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """Packet-out: the frame leaves by --out PORT, or enters the bridge by --in PORT."""
    req = pb.SendPacketRequest(bridge=a.bridge)
    if a.out_port:
        req.out_port = a.out_port
    else:
        req.in_port = a.in_port
    frame = packet_frame(a.frame)
    if isinstance(frame, bytes):
        req.data = frame
    else:
        req.packet.CopyFrom(frame)
    r = c.stub.SendPacket(req, timeout=t)
    return [{"bridge": a.bridge, "out_port": req.out_port, "in_port": req.in_port,
             "length": r.length}]


def _emit(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def cmd_watch(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """Print decisions as they happen until Ctrl-C, -n COUNT events, or the daemon ends the
    stream. Prints as it goes (returns no rows)."""
    req = pb.WatchRequest(bridge=a.bridge, port=a.port or "", drops_only=a.drops,
                          count=a.count or 0)
    if a.match:
        from vswapi.flowspec import parse_match

        req.match.CopyFrom(_parsed(parse_match, a.match))
    call = c.stub.Watch(req)  # no deadline: a watch lasts as long as the user wants
    try:
        for msg in call:
            if msg.WhichOneof("kind") == "lost":
                _emit(json.dumps({"lost": msg.lost}) if a.json else f"lost {msg.lost}")
                continue
            row = rows.watch_event_row(msg.event)
            _emit(json.dumps(row) if a.json else watch_line(row))
    except KeyboardInterrupt:
        call.cancel()
    except BrokenPipeError:  # `vswctl watch br0 | head`
        call.cancel()
    except CallError as exc:
        if exc.code() != Code.CANCELLED:
            raise
    return []


EVENT_KINDS = enum_words(pb.EventKind, "EVENT_KIND_")


def cmd_events(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """Print events as they happen until Ctrl-C, -n COUNT events, or the daemon ends the
    stream. Prints as it goes (returns no rows)."""
    from google.protobuf.json_format import MessageToDict

    req = pb.SubscribeRequest(bridges=a.bridges or [],
                              kinds=[pb.EventKind.Value(f"EVENT_KIND_{k.upper()}")
                                     for k in a.kind or []])
    if a.since is not None:
        req.since_revision = a.since
    call = c.stub.Subscribe(req)  # no deadline: it lasts as long as the user wants
    seen = 0
    try:
        for msg in call:
            _emit(json.dumps(MessageToDict(msg, preserving_proto_field_name=True))
                  if a.json else event_line(msg))
            seen += msg.WhichOneof("kind") != "lost"
            if a.count and seen >= a.count:
                call.cancel()
                break
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C, `vswctl events | head`
        call.cancel()
    except CallError as exc:
        if exc.code() != Code.CANCELLED:
            raise
    return []


def cmd_set_watch_rate(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """The switch-wide watch event rate limit (kept across daemon restarts)."""
    req = pb.UpdateWatchConfigRequest(config=pb.WatchConfig(rate_limit=a.rate))
    req.update_mask.paths.append("rate_limit")
    cfg = c.stub.UpdateWatchConfig(req, timeout=t)
    return [{"rate_limit": cfg.rate_limit}]


def cmd_packet_in(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """Print the packet-ins of the bridges (none: of every bridge) as they come, until Ctrl-C,
    --count frames, or the daemon ends the stream. Prints as it goes (returns no rows)."""
    call = c.stub.SubscribePacketIn(pb.PacketInRequest(bridges=a.bridges or []))  # no deadline
    sent = 0
    try:
        for msg in call:
            if msg.WhichOneof("kind") == "lost":
                _emit(json.dumps({"lost": msg.lost}) if a.json else f"lost {msg.lost}")
                continue
            row = rows.packet_in_row(msg.packet)
            _emit(json.dumps(row) if a.json else packet_in_line(row))
            sent += 1
            if a.count and sent >= a.count:
                call.cancel()
                break
    except KeyboardInterrupt:
        call.cancel()
    except BrokenPipeError:  # `vswctl packet-in | head`
        call.cancel()
    except CallError as exc:
        if exc.code() != Code.CANCELLED:
            raise
    return []


def cmd_set_packet_in_rate(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    """The switch-wide packet-in rate limit (kept across daemon restarts)."""
    req = pb.UpdatePacketInConfigRequest(config=pb.PacketInConfig(rate_limit=a.rate))
    req.update_mask.paths.append("rate_limit")
    cfg = c.stub.UpdatePacketInConfig(req, timeout=t)
    return [{"rate_limit": cfg.rate_limit}]


def cmd_drops(c: Daemon, a: argparse.Namespace, t: float) -> list[Row]:
    r = c.stub.GetPortStats(pb.GetPortStatsRequest(bridge=a.bridge), timeout=t)
    return rows.drop_rows(r.stats)
