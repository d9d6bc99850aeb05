"""`vswctl watch`: one shared poller drains the datapath's trace ring buffer and hands each event
to the streams whose watcher slot is set in the event's bitmask.

- The datapath evaluates the filters (port, match, drops only) and emits an event only for the
  watchers whose filter passed; `watchers` is a bitmask of their slots.
- Each stream has a bounded queue. The poller never blocks: when a stream's queue is full the
  event is counted as lost for that stream, and the stream reports `lost N` before its next
  event. Events the datapath itself lost (per-CPU rate limit, full ring buffer) are read with
  watch_lost(slot) and reported the same way.
- The poller runs only while at least one stream is open; closing the last stream removes its
  watcher from the datapath, which then emits nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

DEFAULT_QUEUE = 1024       # events buffered per stream
POLL_MS = 100              # ring buffer poll timeout
LOST_CHECK_SECONDS = 0.5   # how often the datapath's per-watcher lost counters are read


@dataclass(frozen=True)
class Lost:
    """N events for this stream were lost since the last notice."""

    count: int


class Hub(Protocol):
    """What a Stream tells when it closes (WatchHub; the packet-in hub, trace/packet_in.py)."""

    def _remove(self, stream: Stream) -> None: ...


class Stream:
    """One watcher's events, in order, with lost notices. Thread-safe; never blocks offer().
    slot: the hub's id of the stream (a watcher slot of the datapath for WatchHub)."""

    def __init__(self, hub: Hub, slot: int, maxsize: int, label: str = "") -> None:
        self.hub = hub
        self.slot = slot
        self.label = label
        self._items: deque[Any] = deque()
        self._maxsize = maxsize
        self._lost = 0
        self._cond = threading.Condition()
        self.closed = False
        self.delivered = 0
        self.lost_total = 0
        self.dp_lost_seen = 0   # the datapath's counter for this slot, as last read

    def offer(self, event: Any) -> bool:
        """Queue an event; False (and counted as lost) when the queue is full."""
        with self._cond:
            if self.closed:
                return False
            if len(self._items) >= self._maxsize:
                self._lost += 1
                self.lost_total += 1
                return False
            self._items.append(event)
            self._cond.notify()
            return True

    def add_lost(self, n: int) -> None:
        if n <= 0:
            return
        with self._cond:
            self._lost += n
            self.lost_total += n
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Any:
        """The next item: a Lost notice (pending losses come first), an event, or None after
        `timeout` seconds or once the stream is closed."""
        with self._cond:
            deadline = None if timeout is None else time.monotonic() + timeout
            while not self._lost and not self._items and not self.closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._lost:
                n, self._lost = self._lost, 0
                return Lost(n)
            if self._items:
                self.delivered += 1
                return self._items.popleft()
            return None

    def close(self) -> None:
        """Remove the watcher from the datapath (idempotent)."""
        with self._cond:
            if self.closed:
                return
            self.closed = True
            self._items.clear()
            self._cond.notify_all()
        self.hub._remove(self)


class PollingHub:
    """Streams fed by one poller thread that drains a datapath ring buffer: it runs while a
    stream is open, hands each poll's records to dispatch() and reads the datapath's lost
    counters (check_lost) every LOST_CHECK_SECONDS. Subclasses say what to poll."""

    name = "poller"

    def __init__(self, dp: Any, queue_size: int = DEFAULT_QUEUE) -> None:
        self.dp = dp
        self.queue_size = queue_size
        self._lock = threading.Lock()
        self._streams: dict[int, Stream] = {}
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lost_ended = 0  # lost by the streams that have ended

    def lost_total(self) -> int:
        """Events this hub's streams lost (queue full, datapath rate limit or ring), the
        ended streams' included: the metrics' counter."""
        with self._lock:
            return self._lost_ended + sum(s.lost_total for s in self._streams.values())

    def _forget(self, stream: Stream) -> bool:
        """Take STREAM out (the caller holds the lock); False if it was not in."""
        if self._streams.get(stream.slot) is not stream:
            return False
        del self._streams[stream.slot]
        self._lost_ended += stream.lost_total
        return True

    def _poll(self, timeout_ms: int) -> list[Any]:
        raise NotImplementedError

    def dispatch(self, events: list[Any]) -> None:
        raise NotImplementedError

    def check_lost(self) -> None:
        raise NotImplementedError

    def close_all(self) -> None:
        with self._lock:
            streams = list(self._streams.values())
        for s in streams:
            s.close()
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)

    def _ensure_poller(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def poll_once(self, timeout_ms: int = POLL_MS) -> int:
        events = self._poll(timeout_ms)
        if events:
            self.dispatch(events)
        return len(events)

    def _run(self) -> None:
        last_lost = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                if not self._streams:
                    self._thread = None
                    return
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - keep serving the other streams
                log.exception("%s: polling the datapath failed", self.name)
                self._stop.wait(0.5)
            now = time.monotonic()
            if now - last_lost >= LOST_CHECK_SECONDS:
                last_lost = now
                self.check_lost()


class WatchHub(PollingHub):
    """The watch streams of one datapath and the poller thread that feeds them."""

    name = "watch-poller"

    def __init__(self, dp: Any, queue_size: int = DEFAULT_QUEUE,
                 on_remove: Callable[[Stream], None] | None = None) -> None:
        super().__init__(dp, queue_size)
        self.on_remove = on_remove

    def _poll(self, timeout_ms: int) -> list[Any]:
        return self.dp.watch_poll(timeout_ms)

    # ---- streams

    def open(self, flt: Any, label: str = "") -> Stream:
        """Add a watcher to the datapath (errors.Unavailable when every slot is taken) and
        return its stream."""
        with self._lock:
            slot = self.dp.watch_add(flt)
            stream = Stream(self, slot, self.queue_size, label)
            self._streams[slot] = stream
            try:
                stream.dp_lost_seen = self.dp.watch_lost(slot)
            except Exception:  # noqa: BLE001 - a counter we cannot read starts at 0
                stream.dp_lost_seen = 0
            self._ensure_poller()
        log.info("watch %s: started (slot %d, %d watching)", label, slot, len(self._streams))
        return stream

    def _remove(self, stream: Stream) -> None:
        with self._lock:
            if not self._forget(stream):
                return
            try:
                self.dp.watch_remove(stream.slot)
            except Exception:  # noqa: BLE001 - the stream goes anyway
                log.exception("watch %s: removing slot %d from the datapath failed",
                              stream.label, stream.slot)
            left = len(self._streams)
        log.info("watch %s: ended (slot %d removed; %d events delivered, %d lost; %d watching)",
                 stream.label, stream.slot, stream.delivered, stream.lost_total, left)
        if self.on_remove is not None:
            self.on_remove(stream)

    def active_slots(self) -> list[int]:
        with self._lock:
            return sorted(self._streams)

    # ---- the poller

    def dispatch(self, events: list[Any]) -> None:
        """Hand each event to the streams of the slots in its bitmask."""
        with self._lock:
            streams = dict(self._streams)
        for ev in events:
            bits = ev.watchers
            while bits:
                low = bits & -bits
                slot = low.bit_length() - 1
                bits ^= low
                stream = streams.get(slot)
                if stream is not None:
                    stream.offer(ev)

    def check_lost(self) -> None:
        """Report the datapath's per-watcher losses to their streams."""
        with self._lock:
            streams = list(self._streams.values())
        for s in streams:
            try:
                n = self.dp.watch_lost(s.slot)
            except Exception:  # noqa: BLE001
                continue
            if n > s.dp_lost_seen:
                s.add_lost(n - s.dp_lost_seen)
            s.dp_lost_seen = n

# ---- events as the API shows them --------------------------------------------------------


@dataclass(frozen=True)
class EventView:
    """A datapath WatchEvent with names: ports by name, the rule by its cookie."""

    time: float               # Unix seconds
    bridge: str
    in_port: str
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
    cookie: int
    table_miss: bool
    verdict: str
    outputs: tuple[str, ...]
    drop_reason: str
    n_copies: int
    hook: str = "tc"  # where the decision was made: "tc" or "xdp"


def wall_time(time_ns: int) -> float:
    """A CLOCK_MONOTONIC timestamp (bpf_ktime_get_ns) as Unix time."""
    if not time_ns:
        return time.time()
    return time.time() - (time.monotonic_ns() - time_ns) / 1e9


class Namer:
    """ifindex -> port name and rule_id -> cookie of one bridge, refreshed (at most once a
    second) when an event names something not seen yet."""

    def __init__(self, bridge: str, lookup: Callable[[], tuple[dict[int, str], dict[int, int]]],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bridge = bridge
        self._lookup = lookup
        self._clock = clock
        self._names: dict[int, str] = {}
        self._cookies: dict[int, int] = {}
        self._at = -1e9
        self.refresh(force=True)

    def refresh(self, force: bool = False) -> None:
        now = self._clock()
        if not force and now - self._at < 1.0:
            return
        self._at = now
        try:
            self._names, self._cookies = self._lookup()
        except Exception:  # noqa: BLE001 - e.g. the bridge is gone: keep what we knew
            log.debug("watch: names of bridge %s not refreshed", self.bridge, exc_info=True)

    def port(self, ifindex: int) -> str:
        if not ifindex:
            return ""
        if ifindex not in self._names:
            self.refresh()
        return self._names.get(ifindex, f"ifindex:{ifindex}")

    def cookie(self, rule_id: int) -> int:
        if not rule_id:
            return 0
        if rule_id not in self._cookies:
            self.refresh()
        return self._cookies.get(rule_id, 0)

    def view(self, ev: Any) -> EventView:
        return EventView(
            time=wall_time(ev.time_ns),
            bridge=self.bridge,
            in_port=self.port(ev.in_port),
            dl_src=ev.dl_src,
            dl_dst=ev.dl_dst,
            dl_type=ev.dl_type,
            dl_vlan=ev.dl_vlan,
            ip_src=ev.ip_src,
            ip_dst=ev.ip_dst,
            nw_proto=ev.nw_proto,
            tp_src=ev.tp_src,
            tp_dst=ev.tp_dst,
            length=ev.length,
            cookie=self.cookie(ev.rule_id),
            table_miss=ev.rule_id == 0,
            verdict=ev.verdict,
            outputs=tuple(self.port(i) for i in ev.outputs),
            drop_reason=ev.drop_reason if ev.verdict == "drop" else "",
            n_copies=ev.n_copies,
            hook=ev.hook,
        )


class Session:
    """What the API serves: a Stream whose events come out as EventViews."""

    def __init__(self, stream: Stream, namer: Namer) -> None:
        self.stream = stream
        self.namer = namer

    def get(self, timeout: float | None = None) -> EventView | Lost | None:
        item = self.stream.get(timeout)
        if item is None or isinstance(item, Lost):
            return item
        return self.namer.view(item)

    def close(self) -> None:
        self.stream.close()

    @property
    def closed(self) -> bool:
        return self.stream.closed
