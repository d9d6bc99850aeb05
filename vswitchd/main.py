"""vswitchd: the daemon's entry point (flags, start-up order, signals)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from vswitchd import __version__, config
from vswitchd.errors import SwitchError
from vswitchd.state import StateError, StateStore

log = logging.getLogger("vswitchd")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vswitchd", description="eBPF-assisted virtual switch daemon (run as root)"
    )
    p.add_argument("--config", metavar="FILE", help="YAML configuration file")
    p.add_argument("--socket", metavar="PATH", help="Unix socket for the gRPC API")
    p.add_argument("--state-dir", metavar="DIR", help="where the desired state is stored")
    p.add_argument("--bpffs-dir", metavar="DIR", help="bpffs directory for pinned maps")
    p.add_argument("--default-datapath", choices=config.DATAPATHS,
                   help="datapath of bridges created without --datapath")
    p.add_argument("--fdb-aging", type=int, metavar="SECONDS", dest="fdb_aging_seconds",
                   help="age of learned FDB entries before removal")
    p.add_argument("--log-level", choices=config.LOG_LEVELS)
    p.add_argument("--check-config", action="store_true",
                   help="validate the configuration and exit (0 if valid)")
    p.add_argument("--version", action="version", version=f"vswitchd {__version__}")
    return p


def load_config(args: argparse.Namespace) -> config.Config:
    cfg = config.load(args.config)
    return config.override(
        cfg,
        socket=args.socket,
        state_dir=args.state_dir,
        bpffs_dir=args.bpffs_dir,
        default_datapath=args.default_datapath,
        fdb_aging_seconds=args.fdb_aging_seconds,
        log_level=args.log_level,
    )


def _open_datapath(cfg: config.Config) -> tuple[object | None, str | None]:
    """The eBPF datapath, or None and the reason it cannot be used."""
    from vswitchd.datapath import Datapath, ebpf_unsupported_reason

    reason = ebpf_unsupported_reason()
    if reason:
        return None, reason
    try:
        return Datapath(cfg.bpffs_dir), None
    except SwitchError as exc:
        return None, str(exc)


def _sweep(switch: object, stop: threading.Event, fdb_interval: float,
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
        if time.monotonic() < next_fdb:
            continue
        next_fdb = time.monotonic() + fdb_interval
        try:
            removed = switch.sweep_fdb()
            if removed:
                log.debug("aged out %d FDB entries", removed)
        except Exception:
            log.exception("FDB aging sweep failed")


def run(cfg: config.Config) -> int:
    from vswitchd.api import server as api_server
    from vswitchd.netlink.links import Links
    from vswitchd.switch import Switch

    started = time.monotonic()
    store = StateStore(cfg.state_dir)
    try:
        store.load()
    except StateError as exc:
        log.error("%s", exc)
        return 1
    datapath, reason = _open_datapath(cfg)
    if datapath is None:
        log.warning("eBPF datapath unavailable: %s; only `--datapath kernel` bridges work", reason)
    links = Links()
    switch = Switch(cfg, links, store, datapath, reason)
    switch.reconcile()
    try:
        server = api_server.start(switch, cfg)
    except (SwitchError, RuntimeError) as exc:
        log.error("cannot listen on %s: %s", cfg.socket, exc)
        return 1

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    interval = min(max(cfg.fdb_aging_seconds / 10, 1.0), 30.0)
    sweeper = threading.Thread(target=_sweep, args=(switch, stop, interval),
                               name="aging", daemon=True)
    sweeper.start()
    log.info("vswitchd %s ready in %.2fs: listening on %s (eBPF datapath %s)", __version__,
             time.monotonic() - started, cfg.socket,
             "available" if datapath is not None else "unavailable")
    stop.wait()
    log.info("stopping; the datapath stays in place and keeps forwarding")
    server.stop(grace=2).wait()
    if datapath is not None:
        datapath.close()
    links.close()
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
    if os.geteuid() != 0:
        print("vswitchd: must run as root (it creates interfaces and loads eBPF programs)",
              file=sys.stderr)
        return 1
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
