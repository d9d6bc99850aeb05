"""vswctl: the operator's command line for vswitchd, over its gRPC API.

    vswctl [--socket PATH] [-j|--json] [--timeout SECONDS] COMMAND [ARGS]

Every command is one entry of COMMANDS: its name, arguments, help, handler (`vswctl.commands`)
and the layout of its result (`vswctl.render`); the parser is built from that table.

Flow of `main`: parse (usage errors exit 1) -> connect -> the command's handler sends its request
and returns rows -> render them in the command's layout, as table or JSON, on stdout. Errors go
to stderr as `vswctl: <message>`; the exit code says whose fault it was:

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

from vswapi import names
from vswapi.sockets import DEFAULT_SOCKET, SOCKET_ENV, default_socket_path
from vswctl import commands as cmds
from vswctl import render as layout
from vswctl.daemon import Daemon
from vswctl.format import render
from vswctl.syntax import PROG, Arg, Command, OneOf, Parser, UsageError, add_command, arg
from vswctl.unary import CallError, Code

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
DEFAULT_TIMEOUT = 30.0  # creating an ebpf bridge may compile the datapath: seconds, not millis

START_HINT = "is the daemon running? start it with 'make run' or 'vswitchd'"


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


def _label(text: str) -> tuple[str, str]:
    """KEY=VALUE (the daemon checks the key's and value's rules)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


# WatchConfig.rate_limit's and PacketInConfig.rate_limit's range (proto/vswapi/switch.proto);
# the daemon checks it too.
MAX_WATCH_RATE = 1_000_000_000


def _rate(unit: str):
    what = f"must be a whole number of {unit} per second per CPU in 1..{MAX_WATCH_RATE}"

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} {what}") from None
        if not 1 <= value <= MAX_WATCH_RATE:
            raise argparse.ArgumentTypeError(f"{value} {what}")
        return value

    parse.__name__ = "RATE"
    return parse


_watch_rate = _rate("events")
_packet_in_rate = _rate("packet-ins")


def _ifname(what: str):
    """An interface name's length (at most 15 bytes) checked before anything is sent; the
    daemon checks the rest of the rule (vswapi.names)."""

    def parse(text: str) -> str:
        why = names.ifname_too_long(text)
        if why is not None:
            raise argparse.ArgumentTypeError(f"{what} name {names.shown(text)} {why}")
        return text

    parse.__name__ = what
    return parse
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


# ---------------------------------------------------------------- the command table

BR = arg("bridge", metavar="BR", type=_ifname("bridge"))
PORT = arg("port", metavar="PORT", type=_ifname("port"))
MAC = arg("mac", metavar="MAC", type=_mac)
FDB_VLAN = arg("--vlan", metavar="N", type=_vlan, default=0, help="VLAN (default 0: untagged)")


def _may_exist(what: str) -> Arg:
    return arg("--may-exist", action="store_true",
               help=f"an existing {what} of that name is not an error")


def _if_exists(what: str) -> Arg:
    return arg("--if-exists", action="store_true", help=f"a missing {what} is not an error")


def _vlan_options(clear: bool = False) -> list[Arg | OneOf]:
    """--vlan N | --trunks LIST [--native-vlan N] (eBPF datapath); with CLEAR, also --no-vlan
    (set-port: one of them or --xdp is required, which its handler checks)."""
    modes = [
        arg("--vlan", metavar="N", type=_vid,
            help="access port: untagged on the wire, VLAN N (1-4094) in the switch"),
        arg("--trunks", metavar="LIST", type=_vlan_list,
            help="trunk port: these VLANs tagged on the wire, e.g. 10,20,30-32"),
    ]
    if clear:
        modes.append(arg("--no-vlan", action="store_true",
                         help="no VLAN settings: the port carries every VLAN"))
    return [OneOf(tuple(modes)),
            arg("--native-vlan", metavar="N", type=_vid,
                help="trunk port: untagged frames belong to VLAN N")]


REMOTE = arg("--remote", metavar="IP", action="append",
             help="vxlan: a remote VTEP (another host's underlay address; repeatable)")
XDP = arg("--xdp", choices=list(cmds.XDP_VALUES),
          help="XDP stage (eBPF bridges): auto = native if the driver can, else generic; off "
               "= TC only (default: auto for tap and system ports, off for veth)")


COMMANDS: tuple[Command, ...] = (
    # name, one-line help,
    #     handler, layout of its rows, arguments
    Command("status", "daemon version, uptime and datapath support",
            cmds.cmd_status, layout.STATUS),
    Command("add-br", "create a bridge",
            cmds.cmd_add_br, layout.QUIET, [
        BR,
        arg("--datapath", choices=sorted(cmds.DATAPATH_VALUES),
            help="forwarding datapath (default: the daemon's configured default)"),
        arg("--ip", metavar="CIDR", action="append",
            help="address of the bridge device, e.g. 10.0.0.1/24 (repeatable)"),
        arg("--nat", action="store_true",
            help="masquerade the bridge's IPv4 subnet leaving the host by other interfaces "
                 "(enables IP forwarding)"),
        _may_exist("bridge"),
    ]),
    Command("set-br", "change a bridge's settings: its addresses, NAT",
            cmds.cmd_set_br, layout.QUIET, [
        BR,
        OneOf((arg("--ip", metavar="CIDR", action="append",
                   help="the bridge's addresses become these (repeatable)"),
               arg("--no-ip", action="store_true", help="the bridge keeps no address"))),
        OneOf((arg("--nat", dest="nat", action="store_true", default=None,
                   help="masquerade the bridge's IPv4 subnet"),
               arg("--no-nat", dest="nat", action="store_false",
                   help="remove the bridge's NAT rule"))),
    ]),
    Command("del-br", "delete a bridge and its ports",
            cmds.cmd_del_br, layout.QUIET, [BR, _if_exists("bridge")]),
    Command("list-br", "list bridges",
            cmds.cmd_list_br, layout.BRIDGES),
    Command("show", "bridges with their ports, as a tree",
            cmds.cmd_show, layout.SHOW,
            [arg("bridge", metavar="BR", nargs="?", type=_ifname("bridge"))]),
    Command("add-port", "add a port (veth pair, TAP, system interface, VXLAN tunnel)",
            cmds.cmd_add_port, layout.QUIET, [
        BR,
        arg("port", metavar="PORT", type=_ifname("port"), help="host-side interface name"),
        arg("--type", choices=list(cmds.PORT_TYPE_VALUES), default="veth",
            help="port type (default veth)"),
        arg("--netns", metavar="NS",
            help="veth: namespace of the peer (name under /run/netns or a path)"),
        arg("--peer-name", metavar="IF", type=_ifname("peer"),
            help="veth: peer name in the namespace"),
        arg("--ip", metavar="CIDR", action="append",
            help="veth: address on the peer (repeatable)"),
        arg("--mac", metavar="MAC", type=_mac, help="veth: peer MAC address"),
        arg("--mtu", metavar="N", type=_mtu, help="MTU (default: kernel default)"),
        arg("--owner", metavar="USER", help="tap: user owning the device"),
        arg("--multi-queue", action="store_true",
            help="tap: a multi-queue TAP (IFF_MULTI_QUEUE), one queue per vCPU"),
        arg("--gateway", metavar="IP",
            help="veth: default route of the namespace (inside one of the --ip subnets)"),
        arg("--uplink", action="store_true",
            help="system: an uplink NIC; its addresses and routes move to the bridge "
                 "(and back on del-port) so the host keeps its connectivity"),
        arg("--vni", metavar="N", type=int,
            help="vxlan: the VXLAN network identifier (1-16777215), one bridge per VNI"),
        arg("--local", metavar="IP",
            help="vxlan: this host's underlay address, the tunnel's source (default: by route)"),
        arg("--dstport", metavar="PORT", type=int, help="vxlan: UDP port (default 4789)"),
        REMOTE,
        arg("--label", metavar="KEY=VALUE", type=_label, action="append",
            help="a label kept with the port for its callers (repeatable)"),
        *_vlan_options(),
        XDP,
        _may_exist("port"),
    ]),
    Command("set-port",
            "change a port's VLAN mode (learned FDB entries of the port go), XDP mode or (a "
            "tunnel's) remote VTEPs at run time",
            cmds.cmd_set_port, layout.QUIET, [
        BR, PORT, *_vlan_options(clear=True), XDP,
        OneOf((arg("--remote", metavar="IP", action="append",
                   help="vxlan: the remote VTEPs become these (repeatable)"),
               arg("--no-remotes", action="store_true", help="vxlan: no remote VTEP"))),
    ]),
    Command("del-port", "delete a port",
            cmds.cmd_del_port, layout.QUIET, [BR, PORT, _if_exists("port")]),
    Command("list-ports", "list the ports of a bridge",
            cmds.cmd_list_ports, layout.PORTS, [BR]),
    Command("dump-fdb", "show the forwarding database of a bridge",
            cmds.cmd_dump_fdb, layout.FDB, [BR]),
    Command("add-fdb", "add a static forwarding entry",
            cmds.cmd_add_fdb, layout.QUIET, [
        BR, MAC, PORT, FDB_VLAN,
        arg("--remote", metavar="IP",
            help="tunnel port: the remote VTEP the MAC is behind (required there)"),
    ]),
    Command("add-vtep", "add a remote VTEP to a tunnel port",
            cmds.cmd_add_vtep, layout.QUIET, [
        BR, PORT, arg("address", metavar="IP", help="the remote host's underlay address"),
        _may_exist("VTEP"),
    ]),
    Command("del-vtep", "remove a remote VTEP from a tunnel port",
            cmds.cmd_del_vtep, layout.QUIET, [
        BR, PORT, arg("address", metavar="IP"), _if_exists("VTEP"),
    ]),
    Command("list-vteps", "list the remote VTEPs of tunnel ports",
            cmds.cmd_list_vteps, layout.VTEPS, [
        arg("bridge", metavar="BR", nargs="?", type=_ifname("bridge")),
        arg("port", metavar="PORT", nargs="?", type=_ifname("port")),
    ]),
    Command("del-fdb", "delete a forwarding entry",
            cmds.cmd_del_fdb, layout.QUIET, [BR, MAC, FDB_VLAN, _if_exists("entry")]),
    Command("port-stats", "packet, byte and drop counters of ports",
            cmds.cmd_port_stats, layout.STATS, [
        BR,
        arg("port", metavar="PORT", nargs="?", type=_ifname("port"),
            help="one port (default: all)"),
    ]),
    Command("add-flow", "add or replace one flow rule",
            cmds.cmd_add_flow, layout.QUIET, [
        BR,
        arg("flow", metavar="FLOW",
            help='ovs-ofctl syntax, e.g. "priority=200,in_port=c1,tcp,tp_dst=80,actions=drop"'),
    ]),
    Command("add-flows", "add flow rules from a file, one a line, all or nothing",
            cmds.cmd_add_flows, layout.QUIET, [
        BR,
        arg("file", metavar="FILE",
            help="one rule a line; '#' comments and blank lines ignored; '-' = stdin"),
    ]),
    Command("replace-flows", "make the flow table exactly the rules of a file",
            cmds.cmd_replace_flows, layout.QUIET, [
        BR,
        arg("file", metavar="FILE", help="as for add-flows; '-' = stdin"),
    ]),
    Command("del-flows", "delete flow rules (all without MATCH)",
            cmds.cmd_del_flows, layout.QUIET, [
        BR,
        arg("match", metavar="MATCH", nargs="?",
            help='flows whose match is at least as specific; "cookie=V/MASK" filters by '
                 "cookie (-1 = all ones)"),
        arg("--strict", action="store_true",
            help="only the flow with exactly this match and priority"),
    ]),
    Command("dump-flows", "flow rules in priority order, with counters",
            cmds.cmd_dump_flows, layout.FLOWS, [BR]),
    Command("shutdown", "stop vswitchd (the datapath keeps forwarding unless --cleanup)",
            cmds.cmd_shutdown, layout.QUIET, [
        arg("--cleanup", action="store_true",
            help="also remove everything vswitchd created: bridges, ports, namespaces it "
                 "created, NAT rules, programs and pinned maps (the stored configuration is "
                 "kept)"),
    ]),
    Command("trace", "what would the datapath do with this packet? (runs the real program on "
                     "it, no side effects)",
            cmds.cmd_trace, layout.TRACE, [
        BR,
        arg("packet", metavar="PACKET",
            help='exact header values in ovs-ofctl syntax, in_port required, e.g. '
                 '"in_port=c1,dl_dst=02:00:00:00:00:02,udp,nw_dst=10.0.0.2,tp_dst=53"; '
                 "other fields take defaults"),
        arg("--truncate", metavar="BYTES", type=_uint("--truncate", 14, 65535),
            help="cut the frame to BYTES bytes (a malformed frame)"),
    ]),
    Command("watch",
            "print the datapath's decisions on live packets, one line each, until Ctrl-C",
            cmds.cmd_watch, layout.QUIET, [  # the handler prints as packets come
        BR,
        arg("--port", metavar="PORT", type=_ifname("port"),
            help="only packets arriving on PORT"),
        arg("--match", metavar="MATCH",
            help='only packets matching (ovs-ofctl syntax, masks allowed), e.g. "icmp"'),
        arg("--drops", action="store_true", help="only dropped packets"),
        arg("-n", "--count", metavar="COUNT", type=_uint("-n", 1, 2**32 - 1),
            help="stop after COUNT packets"),
    ]),
    Command("set-watch-rate", "limit the datapath's watch events (all bridges; kept across "
                              "restarts; `status` shows it)",
            cmds.cmd_set_watch_rate, layout.QUIET, [
        arg("rate", metavar="RATE", type=_watch_rate,
            help="events per second per CPU, 1..1000000000 (default 10000); the events over "
                 "it are reported to watchers as `lost N`"),
    ]),
    Command("drops", "drop counters of a bridge's ports, by reason",
            cmds.cmd_drops, layout.DROPS, [BR]),
    Command("send-packet", "packet-out: send a frame out of a port (--out), or into the bridge "
                           "as if a port received it (--in: flows, VLANs and the FDB apply)",
            cmds.cmd_send_packet, layout.SENT, [
        BR,
        OneOf((arg("--out", dest="out_port", metavar="PORT", type=_ifname("port"),
                   help="the port it leaves by (the bridge's name: delivered to the host)"),
               arg("--in", dest="in_port", metavar="PORT", type=_ifname("port"),
                   help="the port it enters by (the bridge's name: as the host sends it)")),
              required=True),
        arg("frame", metavar="HEXFRAME|PACKET",
            help='the frame in hex (e.g. ffffffffffff02000000000108060001...), or header '
                 'values in the trace syntax, e.g. "dl_dst=02:00:00:00:00:02,udp,'
                 'nw_dst=10.0.0.2,tp_dst=53" (other fields take trace\'s defaults)'),
    ]),
    Command("events", "print changes as they happen (bridges, ports, FDB, flows, the daemon), "
                      "one line each with its revision, until Ctrl-C",
            cmds.cmd_events, layout.QUIET, [  # the handler prints as events come
        arg("bridges", metavar="BR", nargs="*", type=_ifname("bridge"),
            help="only these bridges (and daemon events); default every bridge"),
        arg("--kind", metavar="KIND", action="append", choices=cmds.EVENT_KINDS,
            help=f"only these kinds ({', '.join(cmds.EVENT_KINDS)}); repeatable"),
        arg("--since", metavar="REVISION", type=_uint("--since", 0, 2**64 - 1),
            help="first the events after REVISION that the daemon still holds (a List's or "
                 "the last event's revision)"),
        arg("-n", "--count", metavar="COUNT", type=_uint("-n", 1, 2**32 - 1),
            help="stop after COUNT events"),
    ]),
    Command("packet-in",
            "print the frames flow rules send to the controllers (the controller action), one "
            "line each, until Ctrl-C",
            cmds.cmd_packet_in, layout.QUIET, [  # the handler prints as frames come
        arg("bridges", metavar="BR", nargs="*", type=_ifname("bridge"),
            help="the bridges to subscribe to (default: every bridge)"),
        arg("-n", "--count", metavar="COUNT", type=_uint("-n", 1, 2**32 - 1),
            help="stop after COUNT frames"),
    ]),
    Command("set-packet-in-rate", "limit the datapath's packet-ins (all bridges; kept across "
                                  "restarts; `status` shows it and the counters)",
            cmds.cmd_set_packet_in_rate, layout.QUIET, [
        arg("rate", metavar="RATE", type=_packet_in_rate,
            help="packet-ins per second per CPU, 1..1000000000 (default 1000); the ones over "
                 "it are counted (status) and reported to the streams as `lost N`"),
    ]),
)
COMMAND_BY_NAME = {c.name: c for c in COMMANDS}


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


def build_parser(argv: Sequence[str] | None = None) -> Parser:
    """The parser; with ARGV naming a command (and no help asked before it), one with only that
    command's subparser: argparse builds ~30 in ~10 ms, a fifth of a whole `vswctl status`."""
    parser = Parser(
        prog=PROG,
        description="Operate vswitchd: bridges, ports, forwarding database, counters, flows.",
        epilog="Exit status: 0 ok, 1 usage error, 2 refused by vswitchd, 3 vswitchd unreachable.",
    )
    _global_options(parser, suppress=False)
    common = Parser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    named = _command_named(argv)
    for command in (named,) if named else COMMANDS:
        add_command(sub, command, [common])
    return parser


_VALUED_GLOBALS = ("--socket", "--timeout")


def _command_named(argv: Sequence[str] | None) -> Command | None:
    """The command ARGV runs, if its first word names one and no -h/--help comes before it."""
    words = list(sys.argv[1:] if argv is None else argv)
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("-h", "--help") or word == "--":
            return None
        if word in _VALUED_GLOBALS:
            i += 2
            continue
        if not word.startswith("-"):
            return COMMAND_BY_NAME.get(word)
        i += 1
    return None


# ---------------------------------------------------------------- errors

def _err(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _rpc_failure(exc: CallError, address: str, timeout: float) -> int:
    code = exc.code()
    details = exc.details() or str(exc)
    if code == Code.UNAVAILABLE:
        hint = START_HINT
        if "ermission denied" in details:
            hint = ("the admin socket is for root, a reader socket for its group's members "
                    "(vswitchd's api.reader_group)")
        _err(f"cannot reach vswitchd at {address}: {details} ({hint})")
        return EXIT_UNREACHABLE
    if code == Code.DEADLINE_EXCEEDED:
        _err(f"cannot reach vswitchd at {address}: no answer within {timeout:g}s "
             f"({START_HINT}; a slow operation may need a longer --timeout)")
        return EXIT_UNREACHABLE
    name = code.name
    if code == Code.PERMISSION_DENIED:
        _err(f"{name}: {details} (a reader may only read: changes need root on the admin "
             "socket, or a client certificate of the admin role)")
        return EXIT_REFUSED
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
    protobuf (and for streams grpc) modules: nothing is left to do."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # `vswctl ... | head`
        pass
    os._exit(rc)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _err(str(exc))
        if exc.usage:
            sys.stderr.write(exc.usage)
        return EXIT_USAGE
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE

    command = COMMAND_BY_NAME[args.command]
    client = Daemon(args.socket or default_socket_path())
    try:
        rows = command.run(client, args, args.timeout)
    except cmds.InputError as exc:  # e.g. a flow that does not parse: nothing was sent
        for message in exc.messages:
            _err(message)
        return EXIT_USAGE
    except CallError as exc:
        return _rpc_failure(exc, client.address, args.timeout)
    finally:
        client.close()

    text = render(command.output.with_rows(rows), args.json)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # `vswctl dump-fdb br0 | head`
        pass
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
