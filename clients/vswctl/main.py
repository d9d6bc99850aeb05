"""vswctl: the operator's command line for vswitchd, over its gRPC API.

    vswctl [--socket PATH] [-j|--json] [--timeout SECONDS] COMMAND [ARGS]

Flow of `main`: parse (usage errors exit 1) -> connect -> the command function sends its request
and returns a View of row dicts -> render as table or JSON on stdout. Errors go to stderr as
`vswctl: <message>`; the exit code says whose fault it was:

    0  success
    1  usage error (bad arguments, client-side validation such as a flow that does not parse)
    2  the daemon refused the request (its status code name and message are printed)
    3  the daemon cannot be reached (UNAVAILABLE, or no answer within --timeout)
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

import grpc

from vswapi.client import DEFAULT_SOCKET, SOCKET_ENV, connect
from vswctl import commands as cmds
from vswctl.format import render

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
DEFAULT_TIMEOUT = 30.0  # creating an ebpf bridge may compile the datapath: seconds, not millis

PROG = "vswctl"
START_HINT = "is the daemon running? start it with 'make run' or 'vswitchd'"


class UsageError(Exception):
    def __init__(self, message: str, usage: str = ""):
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (exit 1, `vswctl: ...`) instead of exiting with 2."""

    def error(self, message: str):  # type: ignore[override]
        unknown = re.match(r"argument COMMAND: invalid choice: '([^']*)'", message)
        if unknown:
            message = f"unknown command '{unknown.group(1)}' (see '{PROG} --help')"
        raise UsageError(message, self.format_usage())


# ---------------------------------------------------------------- argument types

def _uint(name: str, lo: int, hi: int):
    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is out of range {lo}..{hi}")
        return value

    parse.__name__ = name
    return parse


def _timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 seconds")
    return value


_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$")


def _mac(text: str) -> str:
    if not _MAC_RE.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a MAC address (xx:xx:xx:xx:xx:xx)")
    return text


# WatchConfig.rate_limit's range (proto/vswapi/switch.proto); the daemon checks it too.
MAX_WATCH_RATE = 1_000_000_000


def _watch_rate(text: str) -> int:
    what = f"must be a whole number of events per second per CPU in 1..{MAX_WATCH_RATE}"
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} {what}") from None
    if not 1 <= value <= MAX_WATCH_RATE:
        raise argparse.ArgumentTypeError(f"{value} {what}")
    return value


_watch_rate.__name__ = "RATE"
_mtu = _uint("--mtu", 1, 65535)
_vlan = _uint("--vlan", 0, 4094)
_vid = _uint("VLAN id", 1, 4094)


def _vlan_list(text: str) -> list[int]:
    """'10,20,30-32' -> [10, 20, 30, 31, 32]."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first = _vid(lo)
            last = _vid(hi) if sep else first
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
        if last < first:
            raise argparse.ArgumentTypeError(f"{text!r}: range {part} is backwards")
        out.extend(range(first, last + 1))
    return out


def _vlan_options(p: argparse.ArgumentParser, clear: bool = False) -> None:
    """--vlan N | --trunks LIST [--native-vlan N] (eBPF datapath)."""
    group = p.add_mutually_exclusive_group(required=clear)
    group.add_argument("--vlan", metavar="N", type=_vid,
                       help="access port: untagged on the wire, VLAN N (1-4094) in the switch")
    group.add_argument("--trunks", metavar="LIST", type=_vlan_list,
                       help="trunk port: these VLANs tagged on the wire, e.g. 10,20,30-32")
    if clear:
        group.add_argument("--no-vlan", action="store_true",
                           help="no VLAN settings: the port carries every VLAN")
    p.add_argument("--native-vlan", metavar="N", type=_vid,
                   help="trunk port: untagged frames belong to VLAN N")


# ---------------------------------------------------------------- parser

def _global_options(p: argparse.ArgumentParser, suppress: bool) -> None:
    """The global options; on subcommands too (defaults suppressed) so `list-br -j` works."""

    def default(value):
        return argparse.SUPPRESS if suppress else value

    p.add_argument("--socket", metavar="PATH", default=default(None),
                   help=f"daemon socket (default ${SOCKET_ENV} or {DEFAULT_SOCKET})")
    p.add_argument("-j", "--json", action="store_true", default=default(False),
                   help="print JSON instead of a table")
    p.add_argument("--timeout", metavar="SECONDS", type=_timeout,
                   default=default(DEFAULT_TIMEOUT),
                   help=f"give up on the daemon after SECONDS (default {DEFAULT_TIMEOUT:g})")


def build_parser() -> Parser:
    parser = Parser(
        prog=PROG,
        description="Operate vswitchd: bridges, ports, forwarding database, counters, flows.",
        epilog="Exit status: 0 ok, 1 usage error, 2 refused by vswitchd, 3 vswitchd unreachable.",
    )
    _global_options(parser, suppress=False)
    common = Parser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, func: cmds.Command, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common])
        p.set_defaults(func=func)
        return p

    command("status", cmds.cmd_status, "daemon version, uptime and datapath support")

    p = command("add-br", cmds.cmd_add_br, "create a bridge")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("--datapath", choices=sorted(cmds.DATAPATH_VALUES),
                   help="forwarding datapath (default: the daemon's configured default)")
    p.add_argument("--ip", metavar="CIDR", action="append",
                   help="address of the bridge device, e.g. 10.0.0.1/24 (repeatable)")
    p.add_argument("--nat", action="store_true",
                   help="masquerade the bridge's IPv4 subnet leaving the host by other "
                        "interfaces (enables IP forwarding)")
    p.add_argument("--may-exist", action="store_true",
                   help="an existing bridge of that name is not an error")

    p = command("set-br", cmds.cmd_set_br, "change a bridge's settings")
    p.add_argument("bridge", metavar="BR")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--nat", dest="nat", action="store_true", default=None,
                       help="masquerade the bridge's IPv4 subnet")
    group.add_argument("--no-nat", dest="nat", action="store_false",
                       help="remove the bridge's NAT rule")

    p = command("del-br", cmds.cmd_del_br, "delete a bridge and its ports")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("--if-exists", action="store_true", help="a missing bridge is not an error")

    command("list-br", cmds.cmd_list_br, "list bridges")

    p = command("show", cmds.cmd_show, "bridges with their ports, as a tree")
    p.add_argument("bridge", metavar="BR", nargs="?")

    p = command("add-port", cmds.cmd_add_port, "add a port (veth pair, TAP, system interface)")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("port", metavar="PORT", help="host-side interface name")
    p.add_argument("--type", choices=["veth", "tap", "system"], default="veth",
                   help="port type (default veth)")
    p.add_argument("--netns", metavar="NS",
                   help="veth: namespace of the peer (name under /run/netns or a path)")
    p.add_argument("--peer-name", metavar="IF", help="veth: peer name in the namespace")
    p.add_argument("--ip", metavar="CIDR", action="append",
                   help="veth: address on the peer (repeatable)")
    p.add_argument("--mac", metavar="MAC", type=_mac, help="veth: peer MAC address")
    p.add_argument("--mtu", metavar="N", type=_mtu, help="MTU (default: kernel default)")
    p.add_argument("--owner", metavar="USER", help="tap: user owning the device")
    p.add_argument("--multi-queue", action="store_true",
                   help="tap: a multi-queue TAP (IFF_MULTI_QUEUE), one queue per vCPU")
    p.add_argument("--gateway", metavar="IP",
                   help="veth: default route of the namespace (inside one of the --ip subnets)")
    p.add_argument("--uplink", action="store_true",
                   help="system: an uplink NIC; its addresses and routes move to the bridge "
                        "(and back on del-port) so the host keeps its connectivity")
    _vlan_options(p)
    p.add_argument("--may-exist", action="store_true",
                   help="an existing port of that name is not an error")

    p = command("set-port", cmds.cmd_set_port,
                "change a port's VLAN mode at run time (learned FDB entries of the port go)")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("port", metavar="PORT")
    _vlan_options(p, clear=True)

    p = command("del-port", cmds.cmd_del_port, "delete a port")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("port", metavar="PORT")
    p.add_argument("--if-exists", action="store_true", help="a missing port is not an error")

    p = command("list-ports", cmds.cmd_list_ports, "list the ports of a bridge")
    p.add_argument("bridge", metavar="BR")

    p = command("dump-fdb", cmds.cmd_dump_fdb, "show the forwarding database of a bridge")
    p.add_argument("bridge", metavar="BR")

    p = command("add-fdb", cmds.cmd_add_fdb, "add a static forwarding entry")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("mac", metavar="MAC", type=_mac)
    p.add_argument("port", metavar="PORT")
    p.add_argument("--vlan", metavar="N", type=_vlan, default=0, help="VLAN (default 0: untagged)")

    p = command("del-fdb", cmds.cmd_del_fdb, "delete a forwarding entry")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("mac", metavar="MAC", type=_mac)
    p.add_argument("--vlan", metavar="N", type=_vlan, default=0, help="VLAN (default 0: untagged)")
    p.add_argument("--if-exists", action="store_true", help="a missing entry is not an error")

    p = command("port-stats", cmds.cmd_port_stats, "packet, byte and drop counters of ports")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("port", metavar="PORT", nargs="?", help="one port (default: all)")

    p = command("add-flow", cmds.cmd_add_flow, "add or replace one flow rule")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("flow", metavar="FLOW",
                   help='ovs-ofctl syntax, e.g. "priority=200,in_port=c1,tcp,tp_dst=80,'
                        'actions=drop"')

    p = command("add-flows", cmds.cmd_add_flows,
                "add flow rules from a file, one a line, all or nothing")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("file", metavar="FILE",
                   help="one rule a line; '#' comments and blank lines ignored; '-' = stdin")

    p = command("replace-flows", cmds.cmd_replace_flows,
                "make the flow table exactly the rules of a file")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("file", metavar="FILE", help="as for add-flows; '-' = stdin")

    p = command("del-flows", cmds.cmd_del_flows, "delete flow rules (all without MATCH)")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("match", metavar="MATCH", nargs="?",
                   help='flows whose match is at least as specific; "cookie=V/MASK" filters '
                        "by cookie (-1 = all ones)")
    p.add_argument("--strict", action="store_true",
                   help="only the flow with exactly this match and priority")

    p = command("dump-flows", cmds.cmd_dump_flows,
                "flow rules in priority order, with counters")
    p.add_argument("bridge", metavar="BR")

    _shutdown_command(command)
    _trace_commands(command)
    return parser


def _trace_commands(command) -> None:  # issue 4
    p = command("trace", cmds.cmd_trace,
                "what would the datapath do with this packet? (runs the real program on it, "
                "no side effects)")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("packet", metavar="PACKET",
                   help='exact header values in ovs-ofctl syntax, in_port required, e.g. '
                        '"in_port=c1,dl_dst=02:00:00:00:00:02,udp,nw_dst=10.0.0.2,tp_dst=53"; '
                        "other fields take defaults")
    p.add_argument("--truncate", metavar="BYTES", type=_uint("--truncate", 14, 65535),
                   help="cut the frame to BYTES bytes (a malformed frame)")

    p = command("watch", cmds.cmd_watch,
                "print the datapath's decisions on live packets, one line each, until Ctrl-C")
    p.add_argument("bridge", metavar="BR")
    p.add_argument("--port", metavar="PORT", help="only packets arriving on PORT")
    p.add_argument("--match", metavar="MATCH",
                   help='only packets matching (ovs-ofctl syntax, masks allowed), e.g. "icmp"')
    p.add_argument("--drops", action="store_true", help="only dropped packets")
    p.add_argument("-n", "--count", metavar="COUNT", type=_uint("-n", 1, 2**32 - 1),
                   help="stop after COUNT packets")

    p = command("set-watch-rate", cmds.cmd_set_watch_rate,
                "limit the datapath's watch events (all bridges; kept across restarts; "
                "`status` shows it)")
    p.add_argument("rate", metavar="RATE", type=_watch_rate,
                   help="events per second per CPU, 1..1000000000 (default 10000); the "
                        "events over it are reported to watchers as `lost N`")

    p = command("drops", cmds.cmd_drops, "drop counters of a bridge's ports, by reason")
    p.add_argument("bridge", metavar="BR")


def _shutdown_command(command) -> None:  # issue 6
    p = command("shutdown", cmds.cmd_shutdown,
                "stop vswitchd (the datapath keeps forwarding unless --cleanup)")
    p.add_argument("--cleanup", action="store_true",
                   help="also remove everything vswitchd created: bridges, ports, namespaces "
                        "it created, NAT rules, programs and pinned maps (the stored "
                        "configuration is kept)")


# ---------------------------------------------------------------- errors

def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _rpc_failure(exc: grpc.RpcError, address: str, timeout: float) -> int:
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        hint = START_HINT
        if "ermission denied" in details:
            hint = "the socket is for root only: run vswctl as root"
        _err(f"cannot reach vswitchd at {address}: {details} ({hint})")
        return EXIT_UNREACHABLE
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        _err(f"cannot reach vswitchd at {address}: no answer within {timeout:g}s "
             f"({START_HINT}; a slow operation may need a longer --timeout)")
        return EXIT_UNREACHABLE
    name = code.name if code is not None else "UNKNOWN"
    _err(f"{name}: {details}")
    return EXIT_REFUSED


# ---------------------------------------------------------------- main

def main(argv: Sequence[str] | None = None) -> int:
    """vswctl ARGV; without ARGV (the vswctl command itself) the process ends here."""
    rc = _main(argv)
    if argv is None:
        _exit(rc)
    return rc


def _exit(rc: int) -> None:
    """End the process once its output is out, without the interpreter's teardown of the
    grpc and protobuf modules: ~20 ms of a ~120 ms vswctl command, nothing left to do."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # `vswctl ... | head`
        pass
    os._exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _err(str(exc))
        if exc.usage:
            sys.stderr.write(exc.usage)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    client = connect(socket_path=args.socket)
    try:
        view = args.func(client, args, args.timeout)
    except cmds.InputError as exc:  # e.g. a flow that does not parse: nothing was sent
        for message in exc.messages:
            _err(message)
        return EXIT_USAGE
    except grpc.RpcError as exc:
        return _rpc_failure(exc, client.address, args.timeout)
    finally:
        client.close()

    out = render(view, args.json)
    try:
        sys.stdout.write(out)
        sys.stdout.flush()
    except BrokenPipeError:  # `vswctl dump-fdb br0 | head`
        pass
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
