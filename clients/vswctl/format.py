"""Rendering of command results: one list of row dicts, printed as a table or as JSON.

A command's result is a `View`: the rows (plain JSON-able dicts, the same ones `-j` prints) and
how a person reads them (columns of a table, key/value lines of one record, or a tree). `render`
picks JSON or text from the same rows, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

Row = dict[str, Any]


# NamedTuples rather than dataclasses: `dataclasses` (with `inspect`) is 5 ms of a 55 ms command

class Column(NamedTuple):
    key: str                                   # key in the row dict
    header: str                                # table header / record label
    fmt: Callable[[Any, Row], str] | None = None  # value -> text (default: text_of)
    right: bool = False                        # right-align (numbers)
    optional: bool = False                     # a table shows it only when a row has a value

    def text(self, row: Row) -> str:
        value = row.get(self.key)
        return self.fmt(value, row) if self.fmt else text_of(value)


class View(NamedTuple):
    """What a command produced. Without rows, a layout: each command's table entry holds one,
    and the rows its handler returns are filled in (`with_rows`).

    style: "table"  aligned columns under a header row (`ip -br` / `ovs-ofctl` style);
           "record" one object as "label: value" lines (status);
           "tree"   `text` renders the rows (show);
           "lines"  `text` renders one line a row (dump-flows, like ovs-ofctl);
           "quiet"  nothing in text mode (write commands, like ovs-vsctl); JSON still prints.
    single: JSON prints rows[0] as an object instead of a list of objects.
    """

    rows: Sequence[Row] = ()
    columns: Sequence[Column] = ()
    style: str = "table"
    single: bool = False
    text: Callable[[list[Row]], list[str]] | None = None

    def with_rows(self, rows: list[Row]) -> View:
        return self._replace(rows=rows)


def text_of(value: Any) -> str:
    """Default text of a value in a table: lists joined by commas, missing values as '-'."""
    if value is None or value == "" or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ",".join(text_of(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={text_of(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def render_json(view: View) -> str:
    if view.single:
        data: Any = view.rows[0] if view.rows else {}
    else:
        data = view.rows
    return json.dumps(data, indent=2) + "\n"


def render_table(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    columns = [c for c in columns if not c.optional or any(r.get(c.key) for r in rows)]
    cells = [[c.header for c in columns]]
    cells += [[c.text(row) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for line in cells:
        parts = []
        for i, (col, cell) in enumerate(zip(columns, line, strict=True)):
            last = i == len(columns) - 1
            if col.right:
                parts.append(cell.rjust(widths[i]))
            elif last:
                parts.append(cell)
            else:
                parts.append(cell.ljust(widths[i]))
        out.append("  ".join(parts).rstrip())
    return "\n".join(out) + "\n"


def render_record(row: Row, columns: Sequence[Column]) -> str:
    width = max((len(c.header) for c in columns), default=0) + 1
    lines = [f"{(c.header + ':').ljust(width)} {c.text(row)}" for c in columns]
    return "\n".join(lines) + "\n"


def render(view: View, as_json: bool) -> str:
    """The text to print on stdout for a command's result ('' for nothing)."""
    if as_json:
        if view.style == "quiet" and not view.rows:
            return ""
        return render_json(view)
    if view.style == "quiet":
        return ""
    if view.style == "record":
        return render_record(view.rows[0], view.columns) if view.rows else ""
    if view.style in ("tree", "lines"):
        assert view.text is not None, f"a {view.style} view needs a text renderer"
        lines = view.text(list(view.rows))
        return "\n".join(lines) + "\n" if lines else ""
    return render_table(view.rows, view.columns)
