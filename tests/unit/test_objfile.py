"""The compiled-object cache (objfile.py) and the C type decoding of tables.py, without root."""

from __future__ import annotations

import ctypes
import os

import pytest

from vswitchd.datapath import objfile, tables


def _obj(n: int = 0) -> dict:
    return {"format": objfile.FORMAT, "maps": {}, "programs": {}, "n": n}


def test_the_key_covers_source_and_the_kernel(monkeypatch):
    a = objfile.cache_key("int x;")
    assert a == objfile.cache_key("int x;") and a != objfile.cache_key("int y;")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(("Linux", "h", "9.9.9", "#2",
                                                                "x86_64")))
    assert objfile.cache_key("int x;") != a


def test_cache_put_get_and_prune(tmp_path):
    cache = objfile.Cache(str(tmp_path / "c"))
    assert cache.get("k0") is None
    for i in range(objfile.KEEP + 3):
        cache.put(f"k{i}", _obj(i))
        os.utime(tmp_path / "c" / f"k{i}.json", (i, i))  # k0 the least recently used
    cache.put("last", _obj(99))
    names = sorted(p.name for p in (tmp_path / "c").iterdir())
    assert len(names) == objfile.KEEP and "last.json" in names and "k0.json" not in names
    assert cache.get("last")["n"] == 99


def test_a_cache_that_cannot_be_written_is_not_fatal(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = objfile.Cache(str(blocker / "c"))  # under a regular file: ENOTDIR
    cache.put("k", _obj())
    assert "cannot store the compiled datapath" in caplog.text
    assert objfile.Cache(None).get("k") is None


def test_obtain_compiles_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(objfile, "compile_in_child",
                        lambda body, scratch: calls.append(body) or _obj(len(calls)))
    cache = objfile.Cache(str(tmp_path))
    assert objfile.obtain("src", "k1", "/x", cache) == (_obj(1), False)
    assert objfile.obtain("src", "k1", "/x", cache) == (_obj(1), True)
    assert objfile.obtain("other", "k2", "/x", cache) == (_obj(2), False)
    assert objfile.obtain("src", "k1", "/x", objfile.Cache(None)) == (_obj(3), False)


def test_compile_errors_carry_the_compilers_last_line(monkeypatch):
    monkeypatch.setattr(objfile.sys, "executable", "/bin/sh")
    monkeypatch.setattr(objfile, "COMPILE_TIMEOUT", 5)

    def run(cmd, **kw):
        import subprocess
        return subprocess.CompletedProcess(cmd, 1, "", "warning: x\nFailed to compile: y\n")

    monkeypatch.setattr(objfile.subprocess, "run", run)
    with pytest.raises(objfile.CompileError, match="^Failed to compile: y$"):
        objfile.compile_in_child("src", "/x")


def test_decode_type_lays_out_structs_as_c_does():
    desc = ["outer", [
        ["a", "unsigned char"],
        ["b", "unsigned int"],
        ["arr", "unsigned short", [3]],
        ["flags", "unsigned int", 4],
        ["rest", "unsigned int", 28],
        ["", [["x", "unsigned long long"], ["y", "int"]], "union"],
        ["inner", [["m", "unsigned char", [6]]], "struct"],
    ], "struct"]
    t = tables.decode_type(desc)
    assert [f[0] for f in t._fields_][:5] == ["a", "b", "arr", "flags", "rest"]
    assert t.b.offset == 4 and t.arr.offset == 8 and t.__anon0.offset == 24
    assert ctypes.sizeof(t) == 40 and t._anonymous_ == ["__anon0"]
    v = t(x=5)
    assert v.x == 5 and v.y == 5  # the anonymous union's members are the struct's
    packed = tables.decode_type(["p", [["a", "unsigned char"], ["b", "unsigned int"]],
                                 "struct_packed"])
    assert ctypes.sizeof(packed) == 5
    with pytest.raises(ValueError, match="cannot decode"):
        tables.decode_type(["bad", [["a", "int", "enum"]]])


def test_per_cpu_leaves_hold_one_value_per_possible_cpu():
    t = tables.table("stats", -1, tables.MAP_PERCPU_ARRAY, "unsigned int",
                     ["s", [["n", "unsigned long long"]]], 4)
    assert len(t.Leaf()) == tables.possible_cpus() >= 1 and t.sLeaf.__name__ == "s"
    assert len(t) == 4 and [k.value for k in t] == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        t[4]
    small = tables.table("s", -1, tables.MAP_PERCPU_ARRAY, "unsigned int", "unsigned int", 1)
    assert ctypes.sizeof(small.Leaf) == 8 * tables.possible_cpus()
    with pytest.raises(ValueError, match="multiple of 8"):
        tables.table("odd", -1, tables.MAP_PERCPU_HASH, "unsigned int",
                     ["o", [["a", "unsigned char"]]], 1)
