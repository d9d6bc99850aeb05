"""The switch's change events and its revision counter (the Subscribe API).

Every change the daemon makes or observes gets the next revision, one switch-wide number that
only grows (the state store keeps it across restarts), and becomes an Event in the log. The log
holds the most recent `history` events in memory (a list trimmed in halves, so it never holds
more than twice that); a subscription is a cursor into it:

- publishing is an append and a notify: a subscriber that does not read costs nothing but its
  cursor, and never slows the daemon or the datapath;
- a cursor that falls behind the oldest event held skips to it and reads a Lost marker that
  says which revisions it missed: never a silent gap;
- a subscriber that reconnects with since_revision reads the events after it, when the log still
  holds them (otherwise OUT_OF_RANGE: resync with the List calls).

Revisions are reserved under the switch's lock by whoever makes the change and published in
order when the change is committed; a change that is rolled back leaves its reserved revisions
unused (a revision number may be skipped, never reused).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from vswitchd.errors import InvalidArgument, OutOfRange, ResourceExhausted

DEFAULT_HISTORY = 10000
# Streams open at once: each holds one of the API's threads while it lasts (vswitchd.api.server
# sizes its pool for them), so more are refused rather than starving the other calls.
MAX_SUBSCRIBERS = 32
KINDS = ("daemon", "bridge", "port", "fdb", "flow")


@dataclass(frozen=True)
class Event:
    """One change. kind: one of KINDS. change: daemon "ready"/"stopping"; bridge, port and flow
    "added"/"removed"/"changed"; fdb "learned"/"moved"/"aged"/"added"/"deleted". reason: port
    "api"/"link-up"/"link-down"/"vanished"/"restored"/"container-gone"; flow (removed)
    "idle-timeout"/"hard-timeout"/"deleted"/"replaced". obj: what changed, as the switch
    reports it (BridgeView, PortView, FdbView, FlowView with a removed rule's final counters;
    the version for daemon events).
    old: fdb moved: (old port, old remote)."""

    revision: int
    time: float
    kind: str
    change: str
    bridge: str = ""
    reason: str = ""
    obj: object = None
    old: tuple[str, str] | None = None


@dataclass(frozen=True)
class Lost:
    """COUNT events (revisions FIRST..LAST, some maybe not for this subscriber) were dropped
    from the log before this subscriber read them."""

    count: int
    first: int
    last: int


class EventLog:
    def __init__(self, revision: int = 0, history: int = DEFAULT_HISTORY,
                 max_subscribers: int = MAX_SUBSCRIBERS) -> None:
        if history < 1:
            raise ValueError("history must be at least 1")
        self.history = history
        self.max_subscribers = max_subscribers
        self.subscribers = 0
        self.revision = revision       # the last revision reserved
        self.published = revision      # the last revision published
        self._floor = revision         # every event after this revision is held
        self._events: list[Event] = []
        self._revisions: list[int] = []  # the events' revisions, for bisect
        self._base = 0                 # sequence number of _events[0]
        self._cond = threading.Condition()
        self._closed = False

    # ---- writing (under the switch's lock) -------------------------------------------------

    def reserve(self) -> int:
        """The next revision, for a change being made."""
        with self._cond:
            self.revision += 1
            return self.revision

    def advance(self, revision: int) -> None:
        """Never hand out a revision at or below REVISION (e.g. rule ids loaded from a store
        older than revisions)."""
        with self._cond:
            self.revision = max(self.revision, revision)
            self.published = max(self.published, revision)
            self._floor = max(self._floor, revision) if not self._events else self._floor

    def publish(self, events: Iterable[Event]) -> None:
        """Append EVENTS (each with a reserved revision) in revision order and wake readers."""
        batch = sorted(events, key=lambda e: e.revision)
        if not batch:
            return
        with self._cond:
            for ev in batch:
                if ev.revision <= self.published:
                    raise ValueError(f"revision {ev.revision} published out of order "
                                     f"(after {self.published})")
                self._events.append(ev)
                self._revisions.append(ev.revision)
                self.published = ev.revision
            if len(self._events) > 2 * self.history:
                cut = len(self._events) - self.history
                self._floor = self._revisions[cut - 1]
                del self._events[:cut]
                del self._revisions[:cut]
                self._base += cut
            self._cond.notify_all()

    def event(self, kind: str, change: str, **fields: object) -> Event:
        """A new event with the next revision (to publish when its change is committed)."""
        return Event(self.reserve(), time.time(), kind, change, **fields)  # type: ignore[arg-type]

    def close(self) -> None:
        """Wake every reader for good (daemon shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # ---- reading ---------------------------------------------------------------------------

    def held(self) -> tuple[int, int]:
        """(floor, last): the log holds every event with floor < revision <= last."""
        with self._cond:
            return self._floor, self.published

    def subscribe(self, since: int | None = None, kinds: Iterable[str] = (),
                  bridges: Iterable[str] = ()) -> Subscription:
        """A cursor after revision SINCE (None: from now on) over the events of KINDS (empty:
        all) concerning BRIDGES (empty: all; daemon events always pass)."""
        kinds = frozenset(kinds)
        bad = sorted(kinds - set(KINDS))
        if bad:
            raise InvalidArgument("kinds", ",".join(bad), f"known kinds: {', '.join(KINDS)}")
        with self._cond:
            if self.subscribers >= self.max_subscribers:
                raise ResourceExhausted(f"{self.subscribers} event streams are open, the most "
                                        "the daemon serves at once: close one first")
            if since is None:
                seq = self._base + len(self._events)
                last = self.published
            else:
                if since > self.published:
                    raise OutOfRange(
                        f"since_revision {since} is ahead of the switch's revision "
                        f"{self.published} (a daemon whose store was reset?): resync with the "
                        "List calls and subscribe from their revision")
                if since < self._floor:
                    raise OutOfRange(
                        f"since_revision {since} is too old: the daemon holds the events after "
                        f"revision {self._floor} only; resync with the List calls and subscribe "
                        "from their revision")
                seq = self._base + bisect.bisect_right(self._revisions, since)
                last = since
            self.subscribers += 1
            return Subscription(self, seq, last, kinds, frozenset(bridges))


class Subscription:
    """A reader's position in the log and its filter. One reader thread per subscription."""

    def __init__(self, log: EventLog, seq: int, last: int, kinds: frozenset[str],
                 bridges: frozenset[str]) -> None:
        self._log = log
        self._seq = seq
        self.last = last        # the revision of the last event passed (or skipped)
        self.kinds = kinds
        self.bridges = bridges
        self.closed = False
        self._counted_out = False

    def _wanted(self, ev: Event) -> bool:
        if self.kinds and ev.kind not in self.kinds:
            return False
        return not self.bridges or ev.kind == "daemon" or ev.bridge in self.bridges

    def get(self, timeout: float) -> Event | Lost | None:
        """The next event for this subscriber, a Lost marker, or None after TIMEOUT seconds
        without one (or once closed)."""
        log = self._log
        deadline = time.monotonic() + timeout
        with log._cond:
            while not (self.closed or log._closed):
                if self._seq < log._base:
                    first = self.last + 1
                    count = log._base - self._seq
                    self._seq = log._base
                    self.last = log._floor
                    return Lost(count, first, log._floor)
                while self._seq < log._base + len(log._events):
                    ev = log._events[self._seq - log._base]
                    self._seq += 1
                    self.last = ev.revision
                    if self._wanted(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                log._cond.wait(left)
            self.closed = True  # closed by the reader, or the log closed (daemon stopping)
            return None

    def close(self) -> None:
        with self._log._cond:
            if not self._counted_out:
                self._counted_out = True
                self._log.subscribers -= 1
            self.closed = True
            self._log._cond.notify_all()
