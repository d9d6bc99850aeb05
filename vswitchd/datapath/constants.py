"""Every constant Python shares with the eBPF programs, parsed from bpf/lib/*.h (one source of
truth, never retyped here): drop reasons, verdicts, trace stages, flags, limits, watch events,
packet-ins.

A name is looked up in all the headers together, so moving a #define from one header to another
needs no change here; a name defined in two headers is refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# VSWITCHD_BPF_DIR runs another build of the programs (a copy of bpf/; upgrade tests, benches).
BPF_DIR = Path(os.environ.get("VSWITCHD_BPF_DIR") or Path(__file__).resolve().parents[2] / "bpf")
LIB_DIR = BPF_DIR / "lib"

_ENTRY_RE = re.compile(r'X\(\s*(\w+)\s*,\s*(0x[0-9a-fA-F]+|\d+)\s*,\s*"([^"]*)"\s*\)')


def parse_xmacro(text: str, macro: str) -> dict[int, str]:
    """{value: text} of the entries of `#define MACRO(X) X(...) \\ X(...) ...` in C source."""
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        if re.match(rf"\s*#\s*define\s+{re.escape(macro)}\s*\(\s*X\s*\)", line):
            start = i
            break
    if start is None:
        raise ValueError(f"no '#define {macro}(X)' table found")
    body = []
    for line in lines[start:]:
        body.append(line)
        if not line.rstrip().endswith("\\"):
            break
    table: dict[int, str] = {}
    for _name, value, name in _ENTRY_RE.findall("\n".join(body)):
        number = int(value, 0)
        if number in table or name in table.values():
            raise ValueError(f"{macro}: duplicate entry {number} {name!r}")
        table[number] = name
    if not table:
        raise ValueError(f"{macro}: table has no X(NAME, value, \"text\") entries")
    return table


def parse_define(text: str, name: str) -> int:
    """The integer value of `#define NAME value`."""
    m = re.search(rf"^\s*#\s*define\s+{re.escape(name)}\s+(0x[0-9a-fA-F]+|\d+)\b", text, re.M)
    if not m:
        raise ValueError(f"no '#define {name} <integer>' found")
    return int(m.group(1), 0)


_HEADERS = {path.name: path.read_text() for path in sorted(LIB_DIR.glob("*.h"))}


def _only(name: str, pattern: str) -> str:
    """The text of the one header that defines NAME (pattern: its #define line)."""
    found = [text for text in _HEADERS.values() if re.search(pattern, text, re.M)]
    if len(found) != 1:
        raise ValueError(f"{name} is defined in {len(found)} headers of {LIB_DIR}, not one")
    return found[0]


def _define(name: str) -> int:
    return parse_define(_only(name, rf"^\s*#\s*define\s+{re.escape(name)}\b"), name)


def _table(macro: str) -> dict[int, str]:
    return parse_xmacro(_only(macro, rf"^\s*#\s*define\s+{re.escape(macro)}\s*\("), macro)


# drop reasons: number -> name, e.g. {0: 'none', 1: 'malformed', ...}; the length of the drops[]
# counter array in port_stats
DROP_REASONS: dict[int, str] = _table("DROP_REASONS")
DROP_REASON_MAX: int = _define("DROP_REASON_MAX")
if max(DROP_REASONS) >= DROP_REASON_MAX:
    raise ValueError("drop_reasons.h: a reason value is not below DROP_REASON_MAX")

# limits
MAX_BRIDGE_PORTS: int = _define("MAX_BRIDGE_PORTS")
MAX_PORTS: int = _define("MAX_PORTS")  # the default; a config may set another (limits.Limits)
MAX_FDB_ENTRIES: int = _define("MAX_FDB_ENTRIES")  # the same
MAX_FLOOD_GROUPS: int = _define("MAX_FLOOD_GROUPS")
MAX_VTEPS: int = _define("MAX_VTEPS")

# bpf_loop callbacks: number -> function (loop.h; compiler.py links them into the programs)
LOOP_CALLBACKS: dict[int, str] = _table("LOOP_CALLBACKS")

# ports, their VLAN modes, the FDB
PORT_F_ACCESS: int = _define("PORT_F_ACCESS")
PORT_F_TRUNK: int = _define("PORT_F_TRUNK")
PORT_F_XDP_TX: int = _define("PORT_F_XDP_TX")
VLAN_BITMAP_WORDS: int = _define("VLAN_BITMAP_WORDS")
FDB_F_STATIC: int = _define("FDB_F_STATIC")
FDB_F_REMOTE: int = _define("FDB_F_REMOTE")
FDB_GEN_DAEMON_STEP: int = _define("FDB_GEN_DAEMON_STEP")

# flow tables
MAX_FLOW_MASKS: int = _define("MAX_FLOW_MASKS")
MAX_FLOW_ACTIONS: int = _define("MAX_FLOW_ACTIONS")
FLOW_F_FORWARDS: int = _define("FLOW_F_FORWARDS")
FLOW_F_CONTROLLER: int = _define("FLOW_F_CONTROLLER")
FLOW_ACTIONS: dict[int, str] = _table("FLOW_ACTIONS")

# the result of a dry run (trace report)
VERDICTS: dict[int, str] = _table("VERDICTS")
TRACE_STAGES: dict[int, str] = _table("TRACE_STAGES")
TAG_ENC_TAGGED: int = _define("TAG_ENC_TAGGED")
TAG_ENC_UNTAGGED: int = _define("TAG_ENC_UNTAGGED")
FLOOD_CHANGED: int = _define("FLOOD_CHANGED")
DRY_RUN_MAGIC: tuple[int, int] = (_define("DRY_RUN_MAGIC_LO"), _define("DRY_RUN_MAGIC_HI"))

# the hooks, and why the XDP hook hands a frame to TC
HOOKS: dict[int, str] = {_define("HOOK_TC"): "tc", _define("HOOK_XDP"): "xdp"}
HANDOFF_REASONS: dict[int, str] = _table("HANDOFF_REASONS")

# live watch events
MAX_WATCHERS: int = _define("MAX_WATCHERS")
WATCH_EVENT_VERSION: int = _define("WATCH_EVENT_VERSION")
WATCH_EVENT_DECISION: int = _define("WATCH_EVENT_DECISION")
WATCH_MAX_OUTPUTS: int = _define("WATCH_MAX_OUTPUTS")
WATCH_DEFAULT_RATE: int = _define("WATCH_DEFAULT_RATE")

# packet-in (the controller action)
PACKET_IN_EVENT_VERSION: int = _define("PACKET_IN_EVENT_VERSION")
PACKET_IN_EVENT_FRAME: int = _define("PACKET_IN_EVENT_FRAME")
PACKET_IN_MAX_LEN: int = _define("PACKET_IN_MAX_LEN")
PACKET_IN_DEFAULT_LEN: int = _define("PACKET_IN_DEFAULT_LEN")
PACKET_IN_DEFAULT_RATE: int = _define("PACKET_IN_DEFAULT_RATE")
PACKET_IN_ALL_BRIDGES: int = _define("PACKET_IN_ALL_BRIDGES")
