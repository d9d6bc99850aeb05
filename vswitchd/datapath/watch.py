"""Live watch of the datapath's decisions (bpf/lib/watch.h): filters, events, their decoding,
and the watch maps and event ring of a loaded program.

The datapath evaluates each watcher's filter itself and emits one event per packet decision
into a ring buffer, with the bitmask of the watchers whose filter it passed. Events start with
a versioned header (u8 version, u8 type, u16 length); EventDecoder.decode() refuses what it
does not know. The event layout is bcc's ctypes type of the program's watch_scratch map (struct
watch_event), never written out here; the constants come from watch.h through constants.py.
"""

from __future__ import annotations

import ctypes
import ipaddress
import threading
from dataclasses import dataclass

from vswitchd.datapath.constants import (
    HOOKS,
    MAX_WATCHERS,
    VERDICTS,
    WATCH_DEFAULT_RATE,
    WATCH_EVENT_DECISION,
    WATCH_EVENT_VERSION,
    WATCH_MAX_OUTPUTS,
)
from vswitchd.datapath.drop_reasons import reason_name
from vswitchd.datapath.flows import FLOW_FIELDS, DpRule, pack_flow_key, validate_rule
from vswitchd.datapath.ringbuf import Ring
from vswitchd.errors import InvalidArgument, NotFound, Unavailable

MAX_RATE = 1_000_000_000  # rate * 1e9 ns-tokens must fit the bucket's u64
HEADER_LEN = 4


@dataclass(frozen=True)
class WatchFilter:
    """What one watcher wants to see, evaluated by the datapath.

    bridge: the bridge's ifindex (required). in_port: ifindex, 0 = any port. fields: a match in
    the form of DpRule.fields, (field, value, mask) with the FLOW_FIELDS names, compared masked
    against the parsed flow key. drops_only: only decisions whose verdict is drop."""

    bridge: int
    in_port: int = 0
    fields: tuple[tuple[str, int, int], ...] = ()
    drops_only: bool = False


@dataclass(frozen=True)
class WatchEvent:
    """One packet decision of the live datapath.

    watchers: bitmask of the watcher slots whose filter the packet passed (bit i = slot i).
    time_ns: bpf_ktime_get_ns() (CLOCK_MONOTONIC). bridge, in_port: ifindexes. dl_src/dl_dst:
    "aa:bb:..". dl_type: EtherType after any VLAN tag. dl_vlan: the frame's VID (0 untagged).
    ip_src/ip_dst: textual IPv4/IPv6, '' when the frame is not IP. nw_proto, tp_src, tp_dst:
    0 when absent. length: the frame's length in bytes. rule_id: the matched flow rule, 0 =
    table miss. verdict: "forward", "flood", "drop" or "pass". outputs: the ports the frame
    went out of (output:PORT actions and the normal forward; up to WATCH_MAX_OUTPUTS).
    n_copies: for a flood, the number of copies. drop_reason: a drop_reasons.h name, "none"
    unless verdict is "drop". For a malformed frame the header fields hold what was parsed.
    hook: where the decision was made, "tc" or "xdp"."""

    watchers: int
    time_ns: int
    bridge: int
    in_port: int
    dl_src: str
    dl_dst: str
    dl_type: int
    dl_vlan: int
    ip_src: str
    ip_dst: str
    nw_proto: int
    tp_src: int
    tp_dst: int
    length: int
    rule_id: int
    verdict: str
    outputs: tuple[int, ...]
    n_copies: int
    drop_reason: str
    hook: str = "tc"


def record_header(raw: bytes, what: str, version: int, etype: int, least: int) -> int:
    """The length in RAW's versioned header (u8 version, u8 type, u16 length, as the ring
    buffer records of watch.h and packet_in.h start); ValueError for a record this reader does
    not understand: short, an unknown version or type, a length under LEAST or over RAW."""
    if len(raw) < HEADER_LEN:
        raise ValueError(f"{what} of {len(raw)} bytes: shorter than its header")
    got_version, got_type, length = raw[0], raw[1], int.from_bytes(raw[2:4], "little")
    if got_version != version:
        raise ValueError(f"{what} version {got_version}; this reader knows {version}")
    if got_type != etype:
        raise ValueError(f"{what} type {got_type} unknown")
    if length < least or length > len(raw):
        raise ValueError(f"{what} length {length} (record {len(raw)} bytes, layout {least})")
    return length


def check_filter(flt: WatchFilter) -> dict[str, tuple[int, int]]:
    """Validates a filter; returns {field: (value & mask, mask)} with in_port folded in."""
    if not isinstance(flt, WatchFilter):
        raise InvalidArgument("filter", flt, "must be a WatchFilter")
    if not isinstance(flt.bridge, int) or not 0 < flt.bridge <= 0xFFFFFFFF:
        raise InvalidArgument("bridge", flt.bridge, "must be a bridge ifindex (> 0)")
    if not isinstance(flt.in_port, int) or not 0 <= flt.in_port <= 0xFFFFFFFF:
        raise InvalidArgument("in_port", flt.in_port, "must be an ifindex, or 0 for any port")
    fields = tuple(tuple(f) for f in flt.fields)
    validate_rule(DpRule(rule_id=1, priority=0, fields=fields, actions=()))  # type: ignore[arg-type]
    match = {name: (value & mask, mask) for name, value, mask in fields}
    if flt.in_port:
        value, mask = match.get("in_port", (0, 0))
        if (flt.in_port & mask) != value:
            raise InvalidArgument("in_port", flt.in_port,
                                  f"contradicts the match's in_port={value}/{mask:#x}")
        match["in_port"] = (flt.in_port, (1 << FLOW_FIELDS["in_port"]) - 1)
    return match


def _mac(raw) -> str:
    return ":".join(f"{b:02x}" for b in bytes(raw))


def ip_text(dl_type: int, raw: bytes, nw_proto: int = 0) -> str:
    """The address as text; '' when the frame is not IP (or its IP header was not parsed:
    a zero address and no protocol)."""
    if not nw_proto and not any(raw):
        return ""
    if dl_type == 0x0800:
        return str(ipaddress.IPv4Address(raw[:4]))
    if dl_type == 0x86DD:
        return str(ipaddress.IPv6Address(raw[:16]))
    return ""


class EventDecoder:
    """Decodes raw ring buffer records with the program's struct watch_event (ctypes)."""

    def __init__(self, event_type: type, verdicts: dict[int, str]) -> None:
        self.event_type = event_type
        self.size = ctypes.sizeof(event_type)
        self.verdicts = verdicts

    def decode(self, raw: bytes) -> WatchEvent:
        """Raises ValueError for a record this reader does not understand: a short record, an
        unknown version or type, or a length that disagrees with the record."""
        record_header(raw, "watch event", WATCH_EVENT_VERSION, WATCH_EVENT_DECISION, self.size)
        ev = self.event_type.from_buffer_copy(raw[:self.size])
        key = ev.key
        n_out = min(ev.n_outputs, WATCH_MAX_OUTPUTS)
        return WatchEvent(
            watchers=ev.watchers,
            time_ns=ev.time_ns,
            bridge=ev.bridge,
            in_port=ev.in_port,
            dl_src=_mac(key.dl_src),
            dl_dst=_mac(key.dl_dst),
            dl_type=key.dl_type,
            dl_vlan=key.dl_vlan,
            ip_src=ip_text(key.dl_type, bytes(key.ip_src), key.nw_proto),
            ip_dst=ip_text(key.dl_type, bytes(key.ip_dst), key.nw_proto),
            nw_proto=key.nw_proto,
            tp_src=key.tp_src,
            tp_dst=key.tp_dst,
            length=ev.pkt_len,
            rule_id=ev.rule_id,
            verdict=self.verdicts.get(ev.verdict, f"unknown-{ev.verdict}"),
            outputs=tuple(ev.outputs[i] for i in range(n_out)),
            n_copies=ev.n_copies,
            drop_reason=reason_name(ev.drop_reason),
            hook=HOOKS.get(ev.hook, f"unknown-{ev.hook}"),
        )


class WatchMaps:
    """The watch maps of one loaded program, not pinned (this instance's ring, this daemon's
    watchers): the watchers' slots and filters, the rate limit, lost counts, the event ring."""

    def __init__(self, bpf) -> None:
        self.ctl = bpf[b"watch_ctl"]
        self.filters = bpf[b"watch_filters"]
        self.lost_counts = bpf[b"watch_lost"]
        self.slots: dict[int, WatchFilter] = {}
        self.rate = WATCH_DEFAULT_RATE
        self.poll_lock = threading.Lock()
        self.bad_events = 0  # records refused by the decoder (version/type/length)
        # sLeaf: the struct (Leaf of a per-CPU map is an array of one per CPU)
        self.decoder = EventDecoder(bpf[b"watch_scratch"].sLeaf, VERDICTS)
        self._ring = Ring(bpf[b"watch_events"])
        self.write_ctl()

    def write_ctl(self) -> None:
        leaf = self.ctl.Leaf()
        leaf.active = sum(1 << slot for slot in self.slots)
        leaf.drops_only = sum(1 << slot for slot, f in self.slots.items() if f.drops_only)
        leaf.rate = self.rate
        self.ctl[self.ctl.Key(0)] = leaf

    def add(self, flt: WatchFilter, match: dict[str, tuple[int, int]]) -> int:
        """Starts emission for a watcher whose filter check_filter() turned into match;
        returns its slot. Raises Unavailable when MAX_WATCHERS watchers exist."""
        free = [i for i in range(MAX_WATCHERS) if i not in self.slots]
        if not free:
            raise Unavailable(f"at most {MAX_WATCHERS} watchers at once")
        slot = free[0]
        zero = self.filters.Key(0)
        filters = self.filters[zero]
        entry = filters.f[slot]
        ctypes.memset(ctypes.addressof(entry), 0, ctypes.sizeof(entry))
        entry.bridge = flt.bridge
        key = {name: value for name, (value, _m) in match.items()}
        mask = {name: m for name, (_v, m) in match.items()}
        for target, values in ((entry.key, key), (entry.mask, mask)):
            raw = pack_flow_key(values)
            ctypes.memmove(ctypes.addressof(target), raw, len(raw))
        self.filters[zero] = filters  # the slot first, then its active bit
        self.lost_counts[self.lost_counts.Key(slot)] = self.lost_counts.Leaf()  # all CPUs
        self.slots[slot] = flt
        self.write_ctl()
        return slot

    def remove(self, slot: int) -> None:
        if slot not in self.slots:
            raise NotFound(f"no watcher in slot {slot}")
        del self.slots[slot]
        self.write_ctl()

    def lost(self, slot: int) -> int:
        return sum(int(v) for v in self.lost_counts[self.lost_counts.Key(slot)])

    def set_rate(self, per_cpu_per_second: int) -> None:
        self.rate = per_cpu_per_second
        self.write_ctl()

    def poll(self, timeout_ms: int) -> list[WatchEvent]:
        """Waits up to timeout_ms for events and decodes those in the ring (from one poller
        thread); [] once closed."""
        with self.poll_lock:
            raw = self._ring.poll(int(timeout_ms))
            if not raw:
                return []
        events = []
        for record in raw:
            try:
                events.append(self.decoder.decode(record))
            except ValueError:
                self.bad_events += 1
        return events

    def close(self) -> None:
        """Stops emission (the attached programs outlive this instance) and waits for a poll
        that is running; later polls return []."""
        self.slots.clear()
        try:
            self.write_ctl()
        except Exception:
            pass
        with self.poll_lock:
            self._ring.close()
