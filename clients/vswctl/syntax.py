"""The shape of a vswctl command: its entry in the command table (name, arguments, help, handler,
layout of the result) and the argparse subcommand built from that entry.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from vswctl.daemon import Daemon
from vswctl.format import Row, View

PROG = "vswctl"

# A handler builds the request from the parsed arguments, calls the daemon within the timeout
# (seconds) and returns the reply as rows.
Handler = Callable[[Daemon, argparse.Namespace, float], list[Row]]


class Arg(NamedTuple):
    """One argument: `parser.add_argument(*names, **options)`."""

    names: tuple[str, ...]
    options: dict[str, Any]


def arg(*names: str, **options: Any) -> Arg:
    return Arg(names, options)


class OneOf(NamedTuple):
    """Arguments that exclude each other; with `required`, exactly one of them must be given."""

    args: tuple[Arg, ...]
    required: bool = False


class Command(NamedTuple):
    """One entry of the command table (ovs-vsctl's `struct ctl_command_syntax`)."""

    name: str
    help: str                  # one line: `vswctl --help` and the command's own --help
    run: Handler
    output: View               # layout of the rows `run` returns (`vswctl.render`)
    args: Sequence[Arg | OneOf] = ()


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


def add_command(sub: argparse._SubParsersAction, command: Command,
                parents: Sequence[argparse.ArgumentParser]) -> None:
    """COMMAND as a subcommand of SUB, its options after those of PARENTS."""
    p = sub.add_parser(command.name, help=command.help, description=command.help,
                       parents=list(parents))
    for a in command.args:
        if isinstance(a, OneOf):
            group = p.add_mutually_exclusive_group(required=a.required)
            for choice in a.args:
                group.add_argument(*choice.names, **choice.options)
        else:
            p.add_argument(*a.names, **a.options)
