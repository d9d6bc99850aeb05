"""vswitchd: the daemon's entry point (flags, start-up order, signals)."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

from vswitchd import __version__, config
from vswitchd.errors import SwitchError
from vswitchd.state import StateError, StateStore

if TYPE_CHECKING:
    from vswitchd.seams import DatapathApi
    from vswitchd.switch import Switch

log = logging.getLogger("vswitchd")
APPLIED_KEY = "applied_config"  # the declared bridges last applied (vswitchd.desired)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vswitchd", description="eBPF-assisted virtual switch daemon (run as root)"
    )
    p.add_argument("--config", metavar="FILE", help="YAML configuration file")
    p.add_argument("--socket", metavar="PATH", help="Unix socket for the gRPC API")
    p.add_argument("--state-dir", metavar="DIR", help="where the desired state is stored")
    p.add_argument("--bpffs-dir", metavar="DIR", help="bpffs directory for pinned maps")
    p.add_argument("--cache-dir", metavar="DIR", help="where compiled programs are kept")
    p.add_argument("--default-datapath", choices=config.DATAPATHS,
                   help="datapath of bridges created without --datapath")
    p.add_argument("--fdb-aging", type=int, metavar="SECONDS", dest="fdb_aging_seconds",
                   help="age of learned FDB entries before removal")
    p.add_argument("--log-level", choices=config.LOG_LEVELS)
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration (declared bridges, ports, FDB entries and "
                        "flows included) and exit: 0 if valid, 1 with FILE:LINE if not")
    p.add_argument("--cleanup", action="store_true",
                   help="remove everything vswitchd created (bridges, ports, namespaces it "
                        "created, NAT rules, programs, pinned maps) and exit; the stored "
                        "desired state is kept")
    p.add_argument("--check-state", action="store_true",
                   help="compare the stored desired state with the kernel (bridges, ports, "
                        "namespaces, NAT rules) and the datapath's pinned maps, print what "
                        "disagrees and exit: 0 if consistent, 1 if not, 2 if it cannot tell")
    p.add_argument("--version", action="version", version=f"vswitchd {__version__}")
    return p


def load_config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config)
    return config.override(
        cfg,
        socket=args.socket,
        state_dir=args.state_dir,
        bpffs_dir=args.bpffs_dir,
        cache_dir=args.cache_dir,
        default_datapath=args.default_datapath,
        fdb_aging_seconds=args.fdb_aging_seconds,
        log_level=args.log_level,
    )


def _open_datapath(cfg: config.Config) -> tuple[DatapathApi | None, str | None]:
    """The eBPF datapath, or None and the reason it cannot be used."""
    from vswitchd.datapath import Datapath, ebpf_unsupported_reason

    reason = ebpf_unsupported_reason()
    if reason:
        return None, reason
    # VSWITCHD_NO_TRACE=1: the programs without the watch stage, the baseline of
    # bench/packet_rate.py's tracing-cost setups (like VSWITCHD_BPF_DIR, not for production).
    trace = os.environ.get("VSWITCHD_NO_TRACE") != "1"
    try:
        return Datapath(cfg.bpffs_dir, trace=trace,
                        cache_dir=os.path.join(cfg.cache_dir, "programs"),
                        limits=cfg.datapath), None
    except SwitchError as exc:
        return None, str(exc)


M_ARENA_MAX = -8  # mallopt()'s parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MALLOC_ARENAS = 2
MMAP_THRESHOLD = 128 << 10  # glibc's initial value


def tune_malloc() -> None:
    """Before any thread starts:
    - at most MALLOC_ARENAS glibc heaps: each thread (gRPC's workers, the netlink worker, the
      link monitor, the sweep) would otherwise take a heap of its own, whose free pages stay
      resident apart from the others'.
    - blocks from MMAP_THRESHOLD up always mapped on their own, unmapped when freed. glibc
      would raise the threshold to the largest such block freed (up to 32 MiB), and later
      ones come from the heaps then: a sweep's FDB batch read (two arrays of the map's 65 536
      entries, 2.3 MiB, zeroed) leaves that much heap touched, resident and fragmented
      between sweeps: 2.4 MiB more with 1 000 ports (issue 16). Blocks allocated often stay
      below it (the relay's reads, vswitchd.api.peers)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc
        pass


def release_free_memory() -> None:
    """Hands the C heap's free pages back to the kernel (glibc keeps them for reuse): after
    start and bulk changes they would stay in the daemon's resident memory."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _sweep(switch: Switch, stop: threading.Event, fdb_interval: float,
           flow_interval: float = 1.0) -> None:
    """Age out FDB entries every fdb_interval and expire flows (idle/hard timeouts) every
    flow_interval; the flow sweep is a no-op for bridges without timed rules."""
    next_fdb = time.monotonic() + fdb_interval
    while not stop.wait(flow_interval):
        try:
            expired = switch.expire_flows()
            if expired:
                log.debug("expired %d flows", expired)
        except Exception:
            log.exception("flow expiry sweep failed")
        try:
            switch.poll_fdb()  # learned, moved, aged entries become events
        except Exception:
            log.exception("FDB event poll failed")
        if time.monotonic() < next_fdb:
            continue
        next_fdb = time.monotonic() + fdb_interval
        try:
            removed = switch.sweep_fdb()
            if removed:
                log.debug("aged out %d FDB entries", removed)
        except Exception:
            log.exception("FDB aging sweep failed")
        release_free_memory()


def _declared(store: StateStore) -> dict:
    from vswitchd import desired

    text = store.get_meta(APPLIED_KEY)
    try:
        return desired.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"state store {store.path}: the applied configuration record is "
                         f"damaged ({exc}); it was left in place for inspection") from None


def apply_declared(switch: Switch, store: StateStore, cfg: config.Config) -> None:
    """Apply the difference between what the file declares (bridges, the watch and packet-in
    rate limits) and what was applied before."""
    from vswitchd import desired
    from vswitchd.trace import ratelimit

    for setting, declared in ((ratelimit.WATCH, cfg.watch.rate_limit),
                              (ratelimit.PACKET_IN, cfg.packet_in.rate_limit)):
        setting.apply_declared(switch, store, declared,
                               cfg.origins.get(setting.config_key, "<config>"))
    if cfg.bridges is None:
        return
    old = _declared(store)
    applied, changes, errors = desired.apply(switch, old, cfg.bridges)
    try:
        store.set_meta(APPLIED_KEY, desired.to_json(applied))
    except OSError as exc:
        log.error("the applied configuration was not recorded in %s: %s", store.path, exc)
    if changes or errors:
        log.info("configuration applied: %d changes, %d errors", changes, errors)


def reload_config(path: str | None, switch: Switch, store: StateStore,
                  running: config.Config) -> bool:
    """SIGHUP: re-read the file and apply only what changed; a bad file changes nothing."""
    if path is None:
        log.warning("SIGHUP: no --config file to re-read")
        return False
    try:
        new = config.load(path)
    except config.ConfigError as exc:
        log.error("configuration reload refused: %s; the running state is kept", exc)
        return False
    for key in ("socket", "state_dir", "bpffs_dir", "default_datapath", "fdb_aging_seconds",
                "tcp", "api", "datapath"):
        if getattr(new, key) != getattr(running, key) and key in new.origins:
            log.warning("configuration reload: %s changed; it takes effect on restart", key)
    if new.watch.max_watchers != running.watch.max_watchers:
        log.warning("configuration reload: watch.max_watchers changed; it takes effect on "
                    "restart")
    try:
        apply_declared(switch, store, new)
    except StateError as exc:
        log.error("configuration reload: %s", exc)
        return False
    log.info("configuration reloaded from %s%s", path,
             ": it declares no bridges" if new.bridges is None else "")
    return True


def cleanup_only(cfg: config.Config, store: StateStore) -> int:
    """`vswitchd --cleanup`: no compile, no reconcile: remove what the store says we made."""
    from vswitchd import cleanup
    from vswitchd.netlink.links import Links

    bridges = store.load()
    links = Links()
    try:
        counts = cleanup.teardown(bridges, links, None, cfg.bpffs_dir)
    finally:
        links.close()
        store.close()
    log.info("cleanup done: %s; the desired state stays in %s (the next start re-creates it)",
             ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()), store.path)
    return 0


def check_state(cfg: config.Config) -> int:
    """`vswitchd --check-state`: read-only, beside a running daemon or after it stopped; run
    it in the daemon's network namespace. The findings go to stdout, one a line; the summary
    to stderr."""
    from vswitchd import consistency

    try:
        findings = consistency.check(cfg.state_dir, cfg.bpffs_dir)
    except consistency.CannotCheck as exc:
        print(f"vswitchd: cannot check the state: {exc}", file=sys.stderr)
        return 2
    for finding in findings:
        print(finding)
    if findings:
        print(f"vswitchd: {len(findings)} inconsistencies between the store {cfg.state_dir}, "
              "the kernel and the datapath", file=sys.stderr)
        return 1
    print(f"vswitchd: the store {cfg.state_dir}, the kernel and the datapath "
          f"({cfg.bpffs_dir}) agree", file=sys.stderr)
    return 0


def run(cfg: config.Config, config_path: str | None = None, cleanup: bool = False) -> int:
    from vswitchd.api import server as api_server
    from vswitchd.monitor import LinkMonitor
    from vswitchd.netlink.links import Links
    from vswitchd.notify import notify
    from vswitchd.switch import Switch, stored_revision
    from vswitchd.trace import ratelimit

    started = time.monotonic()
    store = StateStore(cfg.state_dir)
    try:
        store.load()
        if cleanup:
            return cleanup_only(cfg, store)
        _declared(store)  # a damaged record stops us here, before anything changes
        ratelimit.WATCH.stored(store)
        ratelimit.PACKET_IN.stored(store)
        stored_revision(store)
    except StateError as exc:
        log.error("%s", exc)
        return 1
    datapath, reason = _open_datapath(cfg)
    if datapath is None:
        log.warning("eBPF datapath unavailable: %s; only `--datapath kernel` bridges work", reason)
    links = Links()
    switch = Switch(cfg, links, store, datapath, reason)
    switch.forget_vanished_containers()
    switch.reconcile()
    apply_declared(switch, store, cfg)
    metrics = None
    if cfg.metrics is not None:
        from vswitchd.metrics.server import MetricsServer

        try:
            metrics = MetricsServer(switch, cfg.metrics.address)
        except SwitchError as exc:
            log.error("%s", exc)
            return 1
    try:
        server = api_server.start(switch, cfg, [metrics.api] if metrics else [])
    except (SwitchError, RuntimeError, OSError) as exc:
        log.error("cannot listen on %s: %s", cfg.socket, exc)
        if metrics is not None:
            metrics.stop()
        return 1

    wake = threading.Event()
    flags = {"stop": False, "reload": False, "cleanup": False}

    def request(**what: bool) -> None:
        flags.update(what)
        wake.set()

    switch.set_shutdown_handler(lambda clean: request(stop=True, cleanup=clean))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: request(stop=True))
    signal.signal(signal.SIGHUP, lambda *_: request(reload=True))
    stop = threading.Event()
    interval = min(max(cfg.fdb_aging_seconds / 10, 1.0), 30.0)
    sweeper = threading.Thread(target=_sweep, args=(switch, stop, interval),
                               name="aging", daemon=True)
    sweeper.start()
    monitor = LinkMonitor(switch.owned_links, switch.links_changed, switch.missing_names,
                          switch.port_states_changed)
    monitor.start()
    release_free_memory()  # what loading the state and the programs used and let go
    switch.daemon_event("ready")
    notify("READY=1")
    log.info("vswitchd %s ready in %.2fs: listening on %s (eBPF datapath %s)", __version__,
             time.monotonic() - started, cfg.socket,
             "available" if datapath is not None else "unavailable")
    while True:
        wake.wait()
        wake.clear()
        if flags["reload"] and not flags["stop"]:
            flags["reload"] = False
            notify("RELOADING=1")
            reload_config(config_path, switch, store, cfg)
            notify("READY=1")
        if flags["stop"]:
            break
    notify("STOPPING=1")
    switch.daemon_event("stopping")
    stop.set()
    switch.stop_watches()  # watch streams end, the datapath's watchers are removed
    switch.stop_packet_in()  # packet-in streams end, the subscriptions are removed
    switch.events.close()  # event streams end
    server.stop(grace=2)
    if metrics is not None:
        metrics.stop()
    monitor.stop()
    if flags["cleanup"]:
        counts = switch.teardown_all()
        log.info("stopped and cleaned up: %s; the desired state stays in %s",
                 ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()), store.path)
    else:
        log.info("stopping; the datapath stays in place and keeps forwarding")
        if datapath is not None:
            datapath.close()
    links.close()
    store.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args)
    except config.ConfigError as exc:
        print(f"vswitchd: {exc}", file=sys.stderr)
        return 1
    if args.check_config:
        print(f"vswitchd: configuration {args.config or '<built-in defaults>'} is valid")
        return 0
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # its debug output is per message
    if args.check_state:  # not root: what it cannot read is said, exit 2
        return check_state(cfg)
    if os.geteuid() != 0:
        print("vswitchd: must run as root (it creates interfaces and loads eBPF programs)",
              file=sys.stderr)
        return 1
    tune_malloc()
    return run(cfg, args.config, cleanup=args.cleanup)


if __name__ == "__main__":
    sys.exit(main())
