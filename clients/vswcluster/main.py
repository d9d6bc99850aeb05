"""vswcluster: the cluster agent of one host (README "Cluster agent (vswcluster)").

    vswcluster run --host NAME [--vtep IP] --etcd URL[,URL...] [--socket PATH] [--ttl 10]
                   [--interval 0.3] [--status-file PATH] [--log-level info]
    vswcluster status [--status-file PATH] [-j|--json]

`run` talks to the local vswitchd over its gRPC socket and to etcd; it stops on SIGTERM or
SIGINT and then revokes its lease (the other hosts drop this one at once). `status` reads the
status file the running agent keeps.

Exit codes: 0 success; 1 usage error; 3 status: no (readable) status file.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Sequence

from vswapi.sockets import DEFAULT_SOCKET, SOCKET_ENV
from vswcluster import keys
from vswcluster.agent import Agent
from vswcluster.status import DEFAULT_STATUS_FILE, read_status, render
from vswcluster.store import Store, parse_endpoints
from vswcluster.switch import GrpcSwitch

PROG = "vswcluster"


def _host(text: str) -> str:
    try:
        return keys.check_host(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _ip(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def _etcd(text: str) -> str:
    try:
        parse_endpoints(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _seconds(cast: type, low: float, high: float):
    """An argparse type: a number of seconds (CAST: int or float) in LOW..HIGH."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range {low}..{high} seconds")
        return value
    return parse


_ttl = _seconds(int, 2, 3600)
_interval = _seconds(float, 0.01, 60)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="cluster agent of vswitchd: publishes "
                                "this host's VTEP and MACs in etcd, programs the others'")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the agent (until SIGTERM)")
    run.add_argument("--host", required=True, type=_host, help="this host's name in the cluster")
    run.add_argument("--vtep", type=_ip, help="this host's underlay address (default: the "
                     "tunnel port's local address)")
    run.add_argument("--etcd", required=True, type=_etcd, metavar="URL[,URL...]",
                     help="etcd endpoints, e.g. http://10.0.0.1:2379,http://10.0.0.2:2379")
    run.add_argument("--socket", metavar="PATH",
                     help=f"vswitchd's socket (default ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    run.add_argument("--ttl", type=_ttl, default=10,
                     help="lease TTL in seconds: a dead host leaves the others after it "
                          "(default 10)")
    run.add_argument("--interval", type=_interval, default=0.3,
                     help="seconds between reconcile steps (default 0.3)")
    run.add_argument("--status-file", default=DEFAULT_STATUS_FILE, metavar="PATH",
                     help=f"where the status is kept (default {DEFAULT_STATUS_FILE})")
    run.add_argument("--log-level", default="info",
                     choices=["debug", "info", "warning", "error"])
    st = sub.add_parser("status", help="members, VNIs and what the agent programmed")
    st.add_argument("--status-file", default=DEFAULT_STATUS_FILE, metavar="PATH",
                    help=f"the running agent's status file (default {DEFAULT_STATUS_FILE})")
    st.add_argument("-j", "--json", action="store_true", help="JSON output")
    return p


def cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    switch = GrpcSwitch(args.socket)
    agent = Agent(host=args.host, store=Store(args.etcd), switch=switch, vtep=args.vtep,
                  ttl=args.ttl, interval=args.interval, status_file=args.status_file,
                  switch_address=switch.address)

    def on_signal(signum, _frame) -> None:
        logging.getLogger(PROG).info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    logging.getLogger(PROG).info("host %s, etcd %s, vswitchd %s, ttl %d s", args.host,
                                 args.etcd, switch.address, args.ttl)
    try:
        agent.run()
    finally:
        agent.close(revoke=True)
        switch.close()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    try:
        data = read_status(args.status_file)
    except (OSError, ValueError) as exc:
        print(f"{PROG}: cannot read the status file {args.status_file}: {exc}; is "
              f"'vswcluster run' running with this --status-file?", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render(data))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    return cmd_status(args)


if __name__ == "__main__":
    sys.exit(main())
