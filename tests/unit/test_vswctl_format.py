"""vswctl.format: the one rendering path for tables, records and JSON."""

from __future__ import annotations

import json

from vswctl.format import Column, View, render, text_of
from vswctl.render import duration

ROWS = [{"name": "a", "n": 5, "tags": ["x", "y"]}, {"name": "long-name", "n": 12345, "tags": []}]
COLS = [Column("name", "NAME"), Column("n", "N", right=True), Column("tags", "TAGS")]


def test_table_aligns_and_right_aligns_numbers():
    out = render(View(ROWS, COLS), as_json=False)
    assert out.splitlines() == [
        "NAME           N  TAGS",
        "a              5  x,y",
        "long-name  12345  -",
    ]


def test_json_is_the_same_rows():
    assert json.loads(render(View(ROWS, COLS), as_json=True)) == ROWS
    assert json.loads(render(View(ROWS[:1], COLS, single=True), as_json=True)) == ROWS[0]


def test_record_and_quiet():
    out = render(View(ROWS[:1], COLS, style="record"), as_json=False)
    assert out.splitlines() == ["NAME: a", "N:    5", "TAGS: x,y"]
    assert render(View([{"deleted": True}], style="quiet", single=True), as_json=False) == ""
    assert json.loads(render(View([{"deleted": True}], style="quiet", single=True), True)) == {
        "deleted": True}


def test_text_of_and_duration():
    assert [text_of(v) for v in (None, "", True, False, 1.25, {"a": 1})] == [
        "-", "-", "yes", "no", "1.2", "a=1"]
    assert [duration(s) for s in (0, 59.9, 61, 3725.4, 90061)] == [
        "0s", "59s", "1m01s", "1h02m05s", "1d01h01m01s"]


def test_lines_style_renders_one_line_a_row_and_json_the_rows():
    view = View(ROWS, style="lines", text=lambda rows: [f"{r['name']}={r['n']}" for r in rows])
    assert render(view, as_json=False) == "a=5\nlong-name=12345\n"
    assert json.loads(render(view, as_json=True)) == ROWS
    assert render(View([], style="lines", text=lambda rows: []), as_json=False) == ""
