"""The agent's loop: mirror etcd, program vswitchd, publish the local MACs.

One step (every `interval` seconds, and at once after a watch event):
1. etcd: (re)list the prefix when there is no watch, then drain the watch into the mirror;
   keep the lease alive every ttl/3 (re-grant it when it was lost and publish everything again).
   Any failure: the state programmed in vswitchd stays; the next try waits for the backoff.
2. vswitchd: read the tunnel ports and local MACs; a restart (uptime went down) or a switch
   that was unreachable means a full resync, which is simply the next diff: the agent always
   diffs against what the daemon reports, never against what it believes it did.
3. program: reconcile.program() -> actions, applied one by one (a refused one is reported).
4. publish: reconcile.publish() against the mirror -> only the changed keys are written.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field

import grpc

from vswcluster import keys, reconcile
from vswcluster.reconcile import Action, LocalState
from vswcluster.status import write_status
from vswcluster.store import Backoff, LeaseLost, Store, StoreUnavailable, Watch, WatchLost
from vswcluster.switch import SwitchSide, SwitchUnavailable

log = logging.getLogger("vswcluster")


@dataclass
class Counters:
    puts: int = 0
    deletes: int = 0
    watch_events: int = 0
    relists: int = 0
    lease_grants: int = 0
    actions: int = 0
    action_errors: int = 0
    resyncs: int = 0


@dataclass
class EtcdState:
    connected: bool = False
    last_error: str = ""
    backoff: float = 0.0
    retry_at: float = 0.0
    lease: int = 0
    lease_refreshed: float = 0.0
    revision: int = 0


@dataclass
class SwitchState:
    connected: bool = False
    last_error: str = ""
    uptime: float = 0.0
    last_action_error: str = ""


@dataclass
class Agent:
    host: str
    store: Store
    switch: SwitchSide
    vtep: str | None = None
    ttl: int = 10
    interval: float = 0.3
    status_file: str | None = None
    switch_address: str = ""
    mirror: dict[str, tuple[str, int]] = field(default_factory=dict)
    counters: Counters = field(default_factory=Counters)
    etcd: EtcdState = field(default_factory=EtcdState)
    sw: SwitchState = field(default_factory=SwitchState)
    local: LocalState | None = None
    programmed: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        keys.check_host(self.host)
        self._watch: Watch | None = None
        self._backoff = Backoff(cap=max(1.0, min(5.0, self.ttl / 2)))
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._last_status = ""
        self._publish_all = False

    # ---- etcd -------------------------------------------------------------------------------

    def _etcd_failed(self, exc: BaseException, now: float) -> None:
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        delay = self._backoff.failed()
        self.etcd.connected = False
        self.etcd.last_error = str(exc)
        self.etcd.backoff = round(delay, 3)
        self.etcd.retry_at = now + delay
        log.warning("etcd: %s (next try in %.1f s)", exc, delay)

    def _sync_etcd(self, now: float) -> bool:
        if not self.etcd.connected and now < self.etcd.retry_at:
            return False
        try:
            if self._watch is None:
                self.mirror, self.etcd.revision = self.store.get_prefix(keys.PREFIX)
                self.counters.relists += 1
                self._watch = self.store.watch(keys.PREFIX, self.etcd.revision + 1)
            self._drain()
            if not self.etcd.lease:
                self.etcd.lease = self.store.grant(self.ttl)
                self.etcd.lease_refreshed = now
                self.counters.lease_grants += 1
                self._publish_all = True
                log.info("etcd: lease %x granted (TTL %d s)", self.etcd.lease, self.ttl)
            elif now - self.etcd.lease_refreshed >= self.ttl / 3:
                if self.store.keepalive(self.etcd.lease) <= 0:
                    log.warning("etcd: lease %x was lost; granting a new one", self.etcd.lease)
                    self.etcd.lease = self.store.grant(self.ttl)
                    self.counters.lease_grants += 1
                    self._publish_all = True
                self.etcd.lease_refreshed = now
        except (StoreUnavailable, WatchLost) as exc:
            self._etcd_failed(exc, now)
            return False
        except LeaseLost:
            self.etcd.lease = 0
            return False
        if not self.etcd.connected:
            log.info("etcd: connected to %s", self.store.endpoint)
        self.etcd.connected = True
        self.etcd.last_error = ""
        self.etcd.backoff = 0.0
        self._backoff.reset()
        return True

    def _drain(self) -> None:
        assert self._watch is not None
        while True:
            try:
                item = self._watch.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, WatchLost):
                raise item
            self.counters.watch_events += 1
            self.etcd.revision = max(self.etcd.revision, item.revision)
            if item.kind == "put":
                self.mirror[item.key] = (item.value, item.revision)
            else:
                self.mirror.pop(item.key, None)

    def _publish(self, local: LocalState, now: float) -> None:
        want = reconcile.publish(local, self.host, self.vtep)
        if self._publish_all:
            puts, dels = dict(want), reconcile.publish_diff(want, self.mirror, self.host)[1]
        else:
            puts, dels = reconcile.publish_diff(want, self.mirror, self.host)
        try:
            for k, v in sorted(puts.items()):
                rev = self.store.put(k, v, self.etcd.lease)
                self.mirror[k] = (v, rev)
                self.counters.puts += 1
            for k in dels:
                self.store.delete(k)
                self.mirror.pop(k, None)
                self.counters.deletes += 1
            self._publish_all = False
        except LeaseLost as exc:
            log.warning("etcd: lease %x was lost (%s); granting a new one", self.etcd.lease, exc)
            self.etcd.lease = 0   # the next step grants one and publishes everything again
        except StoreUnavailable as exc:
            self._etcd_failed(exc, now)

    # ---- vswitchd ---------------------------------------------------------------------------

    def _read_switch(self) -> LocalState | None:
        try:
            uptime = self.switch.uptime()
            local = self.switch.read()
        except (SwitchUnavailable, grpc.RpcError) as exc:
            if self.sw.connected:
                log.warning("vswitchd: %s", exc)
            self.sw.connected = False
            self.sw.last_error = str(exc) if isinstance(exc, SwitchUnavailable) else \
                f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
            return None
        if not self.sw.connected or uptime < self.sw.uptime:
            self.counters.resyncs += 1
            log.info("vswitchd: %s: full resync", "restarted" if self.sw.connected else "connected")
        self.sw.connected, self.sw.last_error, self.sw.uptime = True, "", uptime
        return local

    def _program(self, view: keys.ClusterView, local: LocalState) -> int:
        """Apply the diff; returns how many actions vswitchd took."""
        actions: list[Action] = reconcile.program(view, local, self.host, self.vtep)
        done = 0
        for action in actions:
            try:
                self.switch.apply(action)
                self.counters.actions += 1
                done += 1
                log.info("vswitchd: %s", action)
            except SwitchUnavailable as exc:
                self.sw.connected = False
                self.sw.last_error = str(exc)
                return done
            except grpc.RpcError as exc:
                self.counters.action_errors += 1
                self.sw.last_action_error = f"{action}: {exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
                log.warning("vswitchd refused %s", self.sw.last_action_error)
        return done

    # ---- the loop -----------------------------------------------------------------------------

    def step(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        etcd_ok = self._sync_etcd(now)
        local = self._read_switch()
        if local is not None:
            self.local = local
            view = keys.parse(self.mirror)
            done = self._program(view, local)
            if etcd_ok:
                self._publish(local, now)
            # what is programmed now, for the status (read back only when something changed)
            self.programmed = programmed_of(self._reread(local) if done else local)
        self._write_status()

    def _reread(self, fallback: LocalState) -> LocalState:
        try:
            return self.switch.read()
        except (SwitchUnavailable, grpc.RpcError):
            return fallback

    def run(self) -> None:
        # the file exists from the start: a first step that waits on a slow etcd member (a
        # request timeout per endpoint) shows as "not connected yet", not as no agent at all
        self._write_status()
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.step(t0)
            watch = self._watch
            deadline = t0 + self.interval
            # wake early for a watch event: the reconcile follows it at once
            while not self._stop.is_set() and time.monotonic() < deadline:
                if watch is not None and not watch.events.empty():
                    break
                self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()

    def close(self, revoke: bool = True) -> None:
        """A clean stop: revoke the lease so the other hosts drop this one at once."""
        if self._watch is not None:
            self._watch.stop()
            self._watch = None
        if revoke and self.etcd.lease:
            try:
                self.store.revoke(self.etcd.lease)
                log.info("etcd: lease %x revoked", self.etcd.lease)
            except StoreUnavailable as exc:
                log.warning("etcd: could not revoke the lease: %s", exc)
            self.etcd.lease = 0
        self._write_status(stopped=True)

    # ---- status -------------------------------------------------------------------------------

    def status(self, stopped: bool = False) -> dict:
        view = keys.parse(self.mirror)
        return {
            "host": self.host,
            "vtep": reconcile.host_vtep(self.local or LocalState(), self.vtep) or "",
            "pid": os.getpid(),
            "running": not stopped,
            "updated": round(time.time(), 3),
            "interval": self.interval,
            "etcd": {
                "endpoints": [c for c in (f"{s}://{h}:{p}" for s, h, p in self.store.endpoints)],
                "endpoint": self.store.endpoint,
                "connected": self.etcd.connected,
                "last_error": self.etcd.last_error,
                "backoff_seconds": self.etcd.backoff,
                "lease": f"{self.etcd.lease:x}" if self.etcd.lease else "",
                "ttl": self.ttl,
                "revision": self.etcd.revision,
                "failovers": self.store.failovers,
            },
            "vswitchd": {
                "address": self.switch_address,
                "connected": self.sw.connected,
                "last_error": self.sw.last_error,
                "last_refused": self.sw.last_action_error,
            },
            "members": dict(sorted(view.hosts.items())),
            "vnis": {str(vni): dict(sorted(v.items())) for vni, v in sorted(view.vteps.items())},
            "programmed": self.programmed,
            "counters": vars(self.counters).copy(),
        }

    def _write_status(self, stopped: bool = False) -> None:
        if not self.status_file:
            return
        data = self.status(stopped)
        # write when something besides the time changed, or once a second
        sig = repr({k: v for k, v in data.items() if k != "updated"})
        if sig == self._last_status and time.time() - getattr(self, "_status_at", 0) < 1.0:
            return
        self._last_status, self._status_at = sig, time.time()
        write_status(self.status_file, data)


def programmed_of(local: LocalState) -> list[dict]:
    return [{"bridge": t.bridge, "port": t.port, "vni": t.vni,
             "remotes": sorted(t.remotes),
             "fdb": [{"vlan": vlan, "mac": mac, "remote": remote}
                     for (vlan, mac), remote in sorted(t.fdb.items())]}
            for t in sorted(local.tunnels, key=lambda t: (t.bridge, t.port))]
