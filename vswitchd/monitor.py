"""Reconciliation while running: watch netlink link events in the daemon's network namespace.

A reader thread owns an IPRoute bound to RTMGRP_LINK (the namespace the daemon runs in) and only
wakes the checker; the checker waits a moment for the rest of a burst (a namespace going takes
all its veths with it), takes one dump of the links, and calls Switch.links_changed() only when
the kernel and the desired state disagree on something vswitchd owns (a bridge or port that is
gone, a port that came back, a port released from its bridge). Interfaces vswitchd does not own
never cause anything.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vswitchd.netlink import linkdump

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.05   # wait for the rest of a burst of events
RECHECK_SECONDS = 30.0  # also check now and then without events (missed messages, ENOBUFS)


class LinkMonitor:
    def __init__(self, owned: Callable[[set[str] | None], dict[str, tuple[str, str | None]]],
                 on_change: Callable[[], object], missing: Callable[[], set[str]],
                 on_links: Callable[[set[str] | None], object] | None = None) -> None:
        """owned(names) -> {ifname: (kind, bridge it must be enslaved to or None)} of everything
        vswitchd owns (of NAMES only, unless None); missing() -> names currently shown as
        missing; on_change() reconciles;
        on_links(names) runs after every burst of link messages otherwise (a carrier that went
        up or down: the ports' states), with the names of the links the burst was about (None:
        any link, after lost messages or on the periodic look)."""
        self._on_links = on_links
        self._owned = owned
        self._missing = missing
        self._on_change = on_change
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._names: set[str] | None = None  # links with messages since the last check
        self._names_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.events = 0       # link messages seen (for tests and the log)
        self.reconciles = 0   # times on_change ran

    def start(self) -> None:
        bound = threading.Event()
        for target, name in ((self._read, "netlink-events"), (self._check_loop, "reconcile")):
            t = threading.Thread(target=target, args=(bound,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        if not bound.wait(10):
            raise RuntimeError("the netlink event socket could not be opened")
        self._wake.set()  # one check right away: catches what changed while we were down

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            if t.name == "reconcile":
                t.join(5)
        # The reader stays blocked in its socket until the process exits (a daemon thread).

    # ---- threads ---------------------------------------------------------------------------

    def _read(self, bound: threading.Event) -> None:
        events = linkdump.LinkEvents()
        _quiet_pyroute2()
        bound.set()
        while not self._stop.is_set():
            try:
                names = events.recv()
            except OSError as exc:  # ENOBUFS after a flood: some messages were lost
                if self._stop.is_set():
                    return
                log.debug("netlink event socket: %s; checking everything", exc)
                self._seen(None)
                time.sleep(0.05)
                continue
            if names:
                self.events += len(names)
                self._seen(names)

    def _seen(self, names: list[str] | None) -> None:
        """Links that had messages (None: any may have) for the next check."""
        with self._names_lock:
            if names is None or self._names is None:
                self._names = None
            else:
                self._names.update(names)
        self._wake.set()

    def _check_loop(self, _bound: threading.Event) -> None:
        while not self._stop.is_set():
            woken = self._wake.wait(RECHECK_SECONDS)
            if self._stop.is_set():
                return
            time.sleep(SETTLE_SECONDS)
            self._wake.clear()
            with self._names_lock:
                names, self._names = self._names, set()
            if not woken:
                names = None  # the periodic look covers every port
            try:
                if self._disagrees(names):
                    self.reconciles += 1
                    self._on_change()
                elif self._on_links is not None:
                    self._on_links(names)
            except Exception:  # noqa: BLE001 - keep watching
                log.exception("reconciling after link events failed")
                with self._names_lock:
                    self._names = None  # the names are lost: the next check looks at all

    def _disagrees(self, names: set[str] | None = None) -> bool:
        """Whether the kernel and the desired state disagree on something vswitchd owns; with
        NAMES (the links the burst was about), only on those: anything owned that went,
        came back or left its bridge had a message of its own."""
        owned = self._owned(names)
        if names is not None:
            owned = {name: owned[name] for name in names if name in owned}
        if not owned:
            return False
        # linkdump, not pyroute2: every add-port is a burst, and pyroute2 parses a link in
        # about 0.75 ms; and the few links a burst was about, not a dump of them all
        if names is None:
            infos = {name: info for name, (info, _stats) in linkdump.dump().items()}
        else:
            infos = linkdump.lookup(set(owned) | {m for _k, m in owned.values() if m})
        kernel = {name: (info.ifindex, info.master) for name, info in infos.items()}
        missing = self._missing()
        for name, (_kind, master) in owned.items():
            if name not in kernel:
                if name not in missing:
                    return True  # newly gone
                continue
            if name in missing:
                return True  # came back
            if master is not None:
                want = kernel.get(master)
                if want is not None and kernel[name][1] != want[0]:
                    return True
        return False


def _quiet_pyroute2() -> None:
    """pyroute2 logs every message at DEBUG on its own child loggers."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pyroute2"):
            logging.getLogger(name).setLevel(logging.WARNING)
