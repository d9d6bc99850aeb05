"""SubscribePacketIn: one shared poller drains the datapath's packet-in ring and hands each frame
to the streams subscribed to its bridge, as the watch poller does (trace/watch.py, whose Stream
and Lost it uses).

- A stream subscribes to bridges by ifindex, or to every bridge (ALL_BRIDGES). The datapath
  sends packet-ins only for bridges some stream subscribed to (the others count as unwatched);
  a bridge's subscription stays while one stream wants it.
- Each stream has a bounded queue. The poller never blocks: a full queue counts the frame as
  lost for that stream, reported as `lost N` before its next frame. Frames the datapath lost
  (rate limit, full ring) are counted per subscription (packet_in_lost) and reported to the
  streams of those bridges the same way (a stream of every bridge: all of them).
- The poller runs while a stream is open.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from vswitchd.datapath.packet_in import ALL_BRIDGES, PacketInEvent
from vswitchd.trace.watch import DEFAULT_QUEUE, Lost, PollingHub, Stream, wall_time

log = logging.getLogger(__name__)

REASON_ACTION = "action"
REASON_TABLE_MISS = "table-miss"  # the rule of priority 0 with an empty match (OpenFlow 1.3)


class PacketInHub(PollingHub):
    """The packet-in streams of one datapath and the poller thread that feeds them."""

    name = "packet-in-poller"

    def __init__(self, dp: Any, queue_size: int = DEFAULT_QUEUE) -> None:
        super().__init__(dp, queue_size)
        self._keys: dict[int, frozenset[int]] = {}    # stream id -> its subscription keys
        self._refs: dict[int, int] = {}               # key -> streams that want it
        self._seen: dict[int, dict[int, int]] = {}    # stream id -> key -> losses reported
        self._next = 0

    # ---- streams

    def open(self, keys: Iterable[int], label: str = "") -> Stream:
        """A stream of the packet-ins of KEYS (bridge ifindexes, or ALL_BRIDGES)."""
        wanted = frozenset(keys)
        with self._lock:
            added, counted = [], []
            try:
                for key in wanted:
                    if not self._refs.get(key):
                        self.dp.packet_in_watch(key)
                        added.append(key)
                    self._refs[key] = self._refs.get(key, 0) + 1
                    counted.append(key)
            except Exception:
                for key in counted:
                    self._release(key)
                raise
            self._next += 1
            stream = Stream(self, self._next, self.queue_size, label)
            self._streams[stream.slot] = stream
            self._keys[stream.slot] = wanted
            self._seen[stream.slot] = {key: self._lost(key) for key in self._refs
                                       if key not in added}
            self._ensure_poller()
            n = len(self._streams)
        log.info("packet-in %s: started (%d streams)", label, n)
        return stream

    def _release(self, key: int) -> None:
        """One stream less wants KEY (under the lock): the last one ends its subscription."""
        self._refs[key] -= 1
        if self._refs[key] > 0:
            return
        del self._refs[key]
        for seen in self._seen.values():
            seen.pop(key, None)
        try:
            self.dp.packet_in_unwatch(key)
        except Exception:  # noqa: BLE001 - the stream goes anyway
            log.exception("packet-in: ending the subscription of %d failed", key)

    def _remove(self, stream: Stream) -> None:
        with self._lock:
            if not self._forget(stream):
                return
            for key in self._keys.pop(stream.slot):
                self._release(key)
            del self._seen[stream.slot]
            left = len(self._streams)
        log.info("packet-in %s: ended (%d delivered, %d lost; %d streams)", stream.label,
                 stream.delivered, stream.lost_total, left)

    def streams(self) -> int:
        with self._lock:
            return len(self._streams)

    # ---- the poller

    def _poll(self, timeout_ms: int) -> list[PacketInEvent]:
        return self.dp.packet_in_poll(timeout_ms)

    def dispatch(self, events: list[PacketInEvent]) -> None:
        """Hand each frame to the streams of its bridge (and of every bridge)."""
        with self._lock:
            targets = [(self._streams[sid], keys) for sid, keys in self._keys.items()]
        for ev in events:
            for stream, keys in targets:
                if ev.bridge in keys or ALL_BRIDGES in keys:
                    stream.offer(ev)

    def _lost(self, key: int) -> int:
        try:
            return int(self.dp.packet_in_lost(key))
        except Exception:  # noqa: BLE001 - a counter we cannot read counts nothing
            return 0

    def check_lost(self) -> None:
        """Report the datapath's losses of each subscription to the streams that have it."""
        with self._lock:
            lost = {key: self._lost(key) for key in self._refs}
            news = []
            for sid, keys in self._keys.items():
                seen = self._seen[sid]
                n = 0
                for key in (lost if ALL_BRIDGES in keys else keys):
                    now = lost.get(key, 0)
                    if now > seen.get(key, 0):
                        n += now - seen.get(key, 0)
                    seen[key] = now
                if n:
                    news.append((self._streams[sid], n))
        for stream, n in news:
            stream.add_lost(n)

# ---- packet-ins as the API shows them ------------------------------------------------------


@dataclass(frozen=True)
class PacketInView:
    """A packet-in with names: the bridge and port by name, the rule by its cookie."""

    time: float      # Unix seconds
    bridge: str
    in_port: str
    vlan: int        # the frame's VLAN in the switch (0: none)
    cookie: int
    reason: str      # REASON_ACTION or REASON_TABLE_MISS
    data: bytes      # the frame's first max_len bytes, as received
    total_len: int   # the frame's whole length
    hook: str = "tc"


@dataclass(frozen=True)
class BridgeNames:
    """What the views need of one bridge: its name, its ports by ifindex, and per rule id the
    rule's cookie and whether it is the table-miss rule."""

    name: str
    ports: dict[int, str]
    rules: dict[int, tuple[int, bool]]


Names = dict[int, BridgeNames]  # bridge ifindex -> its names


class Namer:
    """Bridge and port names, cookies and reasons of every bridge, refreshed (at most once a
    second) when a frame names something not seen yet."""

    def __init__(self, lookup: Callable[[], Names],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup = lookup
        self._clock = clock
        self._names: Names = {}
        self._at = -1e9
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._at < 1.0:
            return
        self._at = now
        try:
            self._names = self._lookup()
        except Exception:  # noqa: BLE001 - keep what we knew
            log.debug("packet-in: names not refreshed", exc_info=True)

    def _bridge(self, ev: PacketInEvent) -> BridgeNames | None:
        b = self._names.get(ev.bridge)
        if b is None or ev.in_port not in b.ports or ev.rule_id not in b.rules:
            self.refresh()
            b = self._names.get(ev.bridge)
        return b

    def view(self, ev: PacketInEvent) -> PacketInView:
        b = self._bridge(ev)
        cookie, miss = b.rules.get(ev.rule_id, (0, False)) if b else (0, False)
        return PacketInView(
            time=wall_time(ev.time_ns),
            bridge=b.name if b else f"ifindex:{ev.bridge}",
            in_port=b.ports.get(ev.in_port, f"ifindex:{ev.in_port}") if b
            else f"ifindex:{ev.in_port}",
            vlan=ev.vlan,
            cookie=cookie,
            reason=REASON_TABLE_MISS if miss else REASON_ACTION,
            data=ev.data,
            total_len=ev.total_len,
            hook=ev.hook,
        )


class Session:
    """What the API serves: a Stream whose frames come out as PacketInViews."""

    def __init__(self, stream: Stream, namer: Namer) -> None:
        self.stream = stream
        self.namer = namer

    def get(self, timeout: float | None = None) -> PacketInView | Lost | None:
        item = self.stream.get(timeout)
        if item is None or isinstance(item, Lost):
            return item
        return self.namer.view(item)

    def close(self) -> None:
        self.stream.close()

    @property
    def closed(self) -> bool:
        return self.stream.closed
