"""Packet-in of the datapath (bpf/lib/packet_in.h): the subscribed bridges, the rate limit, the
counters, and the ring buffer of frames with their decoding.

A rule's controller action sends the frame's first max_len bytes into a ring buffer of its
own, read through a libbpf ring buffer manager of its own too: bcc's BPF object polls all the
rings it opened together, and the watch poller (watch.py) polls that one from another thread.
Records start with a versioned header (u8 version, u8 type, u16 length); Decoder.decode()
refuses what it does not know. The layout is bcc's ctypes type of the program's
packet_in_scratch map (struct packet_in_event), never written out here; the constants come from
packet_in.h through constants.py.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass

from vswitchd.datapath.constants import (
    HOOKS,
    PACKET_IN_ALL_BRIDGES,
    PACKET_IN_DEFAULT_RATE,
    PACKET_IN_EVENT_FRAME,
    PACKET_IN_EVENT_VERSION,
)
from vswitchd.datapath.ringbuf import Ring
from vswitchd.datapath.watch import record_header
from vswitchd.errors import InvalidArgument

ALL_BRIDGES = PACKET_IN_ALL_BRIDGES  # the subscription key of "every bridge"


@dataclass(frozen=True)
class PacketInEvent:
    """One frame a controller action sent. time_ns: bpf_ktime_get_ns() (CLOCK_MONOTONIC).
    bridge, in_port: ifindexes. rule_id: the rule whose action sent it. vlan: the frame's VLAN
    in the switch as in_port classifies it (0: none). total_len: the frame's length, tags
    included. data: its first bytes, as received (a tag the kernel held put back). hook: "tc"."""

    time_ns: int
    bridge: int
    in_port: int
    rule_id: int
    vlan: int
    total_len: int
    data: bytes
    hook: str = "tc"


@dataclass(frozen=True)
class PacketInCounters:
    """Since the program was loaded, all CPUs: packet-ins sent, refused by the rate limit, lost
    to a full ring, and not sent because no controller subscribed to the frame's bridge."""

    sent: int = 0
    rate_limited: int = 0
    ring_full: int = 0
    unwatched: int = 0


class Decoder:
    """Decodes raw ring records with the program's struct packet_in_event (ctypes)."""

    def __init__(self, event_type: type) -> None:
        self.data_offset = event_type.data.offset
        self.data_room = ctypes.sizeof(event_type) - self.data_offset
        # the fields before data[], at the same offsets: the header alone is copied per record
        fields = [f for f in event_type._fields_ if f[0] != "data"]
        self.header_type = type("PacketInHeader", (ctypes.Structure,), {"_fields_": fields})
        if ctypes.sizeof(self.header_type) != self.data_offset:
            raise RuntimeError("struct packet_in_event: data[] must follow the header")

    def decode(self, raw: bytes) -> PacketInEvent:
        """Raises ValueError for a record this reader does not understand: a short record, an
        unknown version or type, or lengths that disagree with the record."""
        length = record_header(raw, "packet-in record", PACKET_IN_EVENT_VERSION,
                               PACKET_IN_EVENT_FRAME, self.data_offset)
        head = self.header_type.from_buffer_copy(raw[:self.data_offset])
        n = head.data_len
        if n != length - self.data_offset or n > self.data_room:
            raise ValueError(f"packet-in record of {n} data bytes in a record of {length}")
        return PacketInEvent(
            time_ns=head.time_ns,
            bridge=head.bridge,
            in_port=head.in_port,
            rule_id=head.rule_id,
            vlan=head.vlan,
            total_len=head.total_len,
            data=bytes(raw[self.data_offset:length]),
            hook=HOOKS.get(head.hook, f"unknown-{head.hook}"),
        )


class PacketInMaps:
    """The packet-in maps of one loaded program, not pinned (this instance's ring, this
    daemon's subscriptions): the subscribed bridges and their losses, the rate limit, the
    counters, and the ring with its own reader."""

    def __init__(self, bpf) -> None:
        self.ctl = bpf[b"packet_in_ctl"]
        self.bridges = bpf[b"packet_in_bridges"]
        self.stats = bpf[b"packet_in_stats"]
        self.rate = PACKET_IN_DEFAULT_RATE
        self.poll_lock = threading.Lock()
        self.bad_events = 0  # records refused by the decoder (version/type/length)
        self.decoder = Decoder(bpf[b"packet_in_scratch"].sLeaf)
        self._ring = Ring(bpf[b"packet_in_events"])
        self.bridges.clear()  # an earlier daemon's subscriptions, when its build was taken back
        self.write_ctl()

    def write_ctl(self) -> None:
        leaf = self.ctl.Leaf()
        leaf.rate = self.rate
        self.ctl[self.ctl.Key(0)] = leaf

    def set_rate(self, per_cpu_per_second: int) -> None:
        self.rate = per_cpu_per_second
        self.write_ctl()

    def watch(self, key: int) -> None:
        """Packet-ins of bridge KEY (an ifindex, or ALL_BRIDGES) go to the ring, its losses
        counted from 0."""
        self.bridges[self.bridges.Key(key)] = self.bridges.Leaf()  # zero on every CPU

    def unwatch(self, key: int) -> None:
        try:
            del self.bridges[self.bridges.Key(key)]
        except KeyError:
            pass

    def watched(self) -> set[int]:
        return {k.value for k in self.bridges.keys()}

    def lost(self, key: int) -> int:
        """Packet-ins of the subscription KEY lost to the rate limit or a full ring (all CPUs);
        0 for a key not watched."""
        try:
            return sum(int(v.lost) for v in self.bridges[self.bridges.Key(key)])
        except KeyError:
            return 0

    def counters(self) -> PacketInCounters:
        per_cpu = self.stats[self.stats.Key(0)]
        return PacketInCounters(sent=sum(int(c.sent) for c in per_cpu),
                                rate_limited=sum(int(c.rate_limited) for c in per_cpu),
                                ring_full=sum(int(c.ring_full) for c in per_cpu),
                                unwatched=sum(int(c.unwatched) for c in per_cpu))

    def poll(self, timeout_ms: int) -> list[PacketInEvent]:
        """Waits up to timeout_ms for packet-ins and decodes those in the ring (from one poller
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
        """Stops sending (the attached programs outlive this instance: they count unwatched),
        waits for a poll that is running, frees the reader; later polls return []."""
        try:
            for key in list(self.watched()):
                self.unwatch(key)
        except Exception:  # noqa: BLE001 - the maps go with the program anyway
            pass
        with self.poll_lock:
            self._ring.close()


def check_key(key: int) -> int:
    if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= 0xFFFFFFFF:
        raise InvalidArgument("bridge", key,
                              f"must be a bridge ifindex, or {ALL_BRIDGES} for every bridge")
    return key
