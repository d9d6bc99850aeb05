"""Drop reasons and verdicts, parsed from the C headers (one source of truth, never retyped).

bpf/lib/drop_reasons.h holds `#define DROP_REASONS(X) X(NAME, value, "text") ...`; this module
reads the X(...) entries of a named X-macro table and plain `#define NAME value` constants.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# issue 6 (upgrade tests): VSWITCHD_BPF_DIR runs another build of the programs (a copy of bpf/).
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


_TEXT = (LIB_DIR / "drop_reasons.h").read_text()

DROP_REASONS: dict[int, str] = parse_xmacro(_TEXT, "DROP_REASONS")
"""Drop reason number -> name, e.g. {0: 'none', 1: 'malformed', ...}."""

DROP_REASON_IDS: dict[str, int] = {name: value for value, name in DROP_REASONS.items()}

DROP_REASON_MAX: int = parse_define(_TEXT, "DROP_REASON_MAX")
"""Length of the drops[] counter array in port_stats."""

if max(DROP_REASONS) >= DROP_REASON_MAX:
    raise ValueError("drop_reasons.h: a reason value is not below DROP_REASON_MAX")


def reason_name(value: int) -> str:
    return DROP_REASONS.get(value, f"unknown-{value}")
