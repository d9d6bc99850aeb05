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

log = logging.getLogger(__name__)

SETTLE_SECONDS = 0.05   # wait for the rest of a burst of events
RECHECK_SECONDS = 30.0  # also check now and then without events (missed messages, ENOBUFS)


class LinkMonitor:
    def __init__(self, owned: Callable[[], dict[str, tuple[str, str | None]]],
                 on_change: Callable[[], object], missing: Callable[[], set[str]],
                 on_links: Callable[[], object] | None = None) -> None:
        """owned() -> {ifname: (kind, bridge it must be enslaved to or None)} of everything
        vswitchd owns; missing() -> names currently shown as missing; on_change() reconciles;
        on_links() runs after every burst of link messages otherwise (a carrier that went up or
        down: the ports' states)."""
        self._on_links = on_links
        self._owned = owned
        self._missing = missing
        self._on_change = on_change
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._ipr = None
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
        # pyroute2 0.9 sockets belong to the thread (event loop) that made them.
        from pyroute2 import IPRoute
        from pyroute2.netlink.rtnl import RTMGRP_LINK

        self._ipr = IPRoute()
        self._ipr.bind(groups=RTMGRP_LINK)
        _quiet_pyroute2()
        bound.set()
        while not self._stop.is_set():
            try:
                msgs = self._ipr.get()
            except Exception as exc:  # noqa: BLE001 - ENOBUFS after a flood, or closed
                if self._stop.is_set():
                    return
                log.debug("netlink event socket: %s; checking everything", exc)
                self._wake.set()
                time.sleep(0.05)
                continue
            if msgs:
                self.events += len(msgs)
                self._wake.set()

    def _check_loop(self, _bound: threading.Event) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            while not self._stop.is_set():
                self._wake.wait(RECHECK_SECONDS)
                if self._stop.is_set():
                    return
                time.sleep(SETTLE_SECONDS)
                self._wake.clear()
                try:
                    if self._disagrees(ipr):
                        self.reconciles += 1
                        self._on_change()
                    elif self._on_links is not None:
                        self._on_links()
                except Exception:  # noqa: BLE001 - keep watching
                    log.exception("reconciling after link events failed")

    def _disagrees(self, ipr) -> bool:
        owned = self._owned()
        if not owned:
            return False
        kernel = {}
        for msg in ipr.get_links():
            kernel[msg.get_attr("IFLA_IFNAME")] = (msg["index"], msg.get_attr("IFLA_MASTER"))
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
