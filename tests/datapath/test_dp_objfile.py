"""The compiled-object path: bcc compiles in a process of its own, the object is cached, and
the daemon's side loads it with the bpf() syscall and reads the maps without bcc."""

from __future__ import annotations

import ctypes
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from vswitchd.datapath import Datapath, build, builds, compiler, objfile, tables
from vswitchd.datapath.bpfsys import obj_get, object_id
from vswitchd.errors import Unavailable

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cache_dir(tmp_path):
    return str(tmp_path / "programs")


def _compiles(monkeypatch) -> list[str]:
    """Records each compile, which still runs."""
    calls: list[str] = []
    real = objfile.compile_in_child

    def counted(body: str, scratch_dir: str) -> dict:
        calls.append(scratch_dir)
        return real(body, scratch_dir)

    monkeypatch.setattr(objfile, "compile_in_child", counted)
    return calls


def test_a_cached_object_is_loaded_without_compiling(bpffs_dir, cache_dir, monkeypatch):
    compiles = _compiles(monkeypatch)
    dp = Datapath(bpffs_dir, cache_dir=cache_dir)
    try:
        assert len(compiles) == 1 and not os.path.exists(compiles[0])  # scratch pins gone
        assert len(os.listdir(cache_dir)) == 1
        dp.close()
        dp.__init__(bpffs_dir, cache_dir=cache_dir)  # a restart: same source, same kernel
        assert len(compiles) == 1
        dp.close()
        dp.__init__(bpffs_dir, trace=False, cache_dir=cache_dir)  # other build options
        assert len(compiles) == 2 and len(os.listdir(cache_dir)) == 2
    finally:
        dp.destroy()


def test_an_unreadable_cached_object_is_compiled_again(bpffs_dir, cache_dir, monkeypatch,
                                                       caplog):
    compiles = _compiles(monkeypatch)
    Datapath(bpffs_dir, cache_dir=cache_dir).destroy()
    [entry] = Path(cache_dir).glob("*.json")
    for bad in ("{not json", json.dumps({"format": objfile.FORMAT + 1})):
        entry.write_text(bad)
        dp = Datapath(bpffs_dir, cache_dir=cache_dir)
        dp.close()
    assert len(compiles) == 3
    assert "is unreadable" in caplog.text and "not an object of this build" in caplog.text
    assert json.loads(entry.read_text())["format"] == objfile.FORMAT  # written again
    dp.destroy()


def test_a_compile_error_is_reported_and_leaves_no_pins(bpffs_dir, cache_dir, monkeypatch):
    monkeypatch.setattr(build, "source_body",
                        lambda *_: "int tc_ingress(struct __sk_buff *skb) { return x; }")
    with pytest.raises(Unavailable, match="eBPF datapath unavailable: .*Failed to compile"):
        Datapath(bpffs_dir, cache_dir=cache_dir)
    assert not os.path.exists(bpffs_dir)
    assert not any(p.startswith(os.path.basename(bpffs_dir)) for p in os.listdir("/sys/fs/bpf"))
    assert not os.path.exists(cache_dir) or not os.listdir(cache_dir)


def test_map_layouts_equal_bccs(dp):
    """Key and Leaf decoded here have bcc's layout, field by field, and the kernel's sizes."""
    from bcc import BPF

    def layout(t) -> list:
        if not hasattr(t, "_fields_"):
            return [ctypes.sizeof(t)]
        return [(f[0], getattr(t, f[0]).offset, getattr(t, f[0]).size, layout(f[1]))
                for f in t._fields_]

    loaded = dp._bpf
    for name, shape in loaded._shapes.items():
        for part, size in (("key", shape["key_size"]), ("leaf", shape["value_size"])):
            ours = tables.decode_type(shape[part])
            assert layout(ours) == layout(BPF._decode_table_type(shape[part])), (name, part)
            if shape["type"] != tables.MAP_RINGBUF:
                assert ctypes.sizeof(ours) == size, (name, part)
    ports = loaded["ports"]
    assert isinstance(ports, tables.Table) and ctypes.sizeof(ports.Leaf) == \
        loaded._shapes["ports"]["value_size"]
    stats = loaded["port_stats"]
    assert len(stats.Leaf()) == tables.possible_cpus()


def test_the_daemon_side_never_imports_bcc(bpffs_dir, cache_dir):
    """A process that opens the datapath (compiling it first) has no bcc and no libbcc."""
    code = textwrap.dedent(f"""
        import sys
        from vswitchd.datapath import Datapath
        dp = Datapath({bpffs_dir!r}, cache_dir={cache_dir!r})
        try:
            assert "bcc" not in sys.modules, "bcc was imported"
            assert "libbcc" not in open("/proc/self/maps").read(), "libbcc is mapped"
            dp._bpf["ports"].items()
        finally:
            dp.destroy()
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_restart_takes_the_running_build_back(bpffs_dir, cache_dir, monkeypatch):
    """The same build's programs are taken back from their pins (no verifier, no swap); a
    build whose programs use a map that is no longer pinned is loaded anew."""
    dp = Datapath(bpffs_dir, cache_dir=cache_dir)
    try:
        first = {hook: object_id(p.fd) for hook, p in dp._progs.items()}
        assert [n for n in os.listdir(bpffs_dir) if n.startswith(builds.PREFIX)]
        dp.close()
        real = build._load_programs
        monkeypatch.setattr(build, "_load_programs",
                            lambda *a: pytest.fail("programs loaded again"))
        dp.__init__(bpffs_dir, cache_dir=cache_dir)
        assert {hook: object_id(p.fd) for hook, p in dp._progs.items()} == first
        assert len(dp._bpf["ports"].Leaf.__name__) > 0 and dp._bpf["watch_ctl"][0].active == 0
        dp.close()
        os.unlink(os.path.join(bpffs_dir, "port_gen"))  # a map replaced behind our back
        monkeypatch.setattr(build, "_load_programs", real)
        dp.__init__(bpffs_dir, cache_dir=cache_dir)
        assert all(object_id(p.fd) != first[hook] for hook, p in dp._progs.items())
    finally:
        dp.destroy()


def _refused(*args):
    raise OSError(13, "refused by the verifier (test)")


def test_a_failed_first_load_leaves_no_pins(bpffs_dir, cache_dir, monkeypatch):
    """Programs the kernel refuses on a first start: the maps pinned for them and the new
    directory go again. A failed restart leaves the running datapath's pins as they were."""
    monkeypatch.setattr(build, "_load_programs", _refused)
    with pytest.raises(Unavailable, match="refused by the verifier"):
        Datapath(bpffs_dir, cache_dir=cache_dir)
    assert not os.path.exists(bpffs_dir)
    monkeypatch.undo()
    dp = Datapath(bpffs_dir, cache_dir=cache_dir)
    try:
        dp.close()
        before = sorted(os.listdir(bpffs_dir))
        monkeypatch.setattr(build, "_load_programs", _refused)
        monkeypatch.setattr(builds, "reuse", lambda *a: None)  # as if another build ran
        with pytest.raises(Unavailable, match="refused by the verifier"):
            Datapath(bpffs_dir, cache_dir=cache_dir)
        assert sorted(os.listdir(bpffs_dir)) == before
        monkeypatch.undo()
        dp.__init__(bpffs_dir, cache_dir=cache_dir)
    finally:
        dp.destroy()
    assert not os.path.exists(bpffs_dir)


def test_a_pin_directory_the_source_cannot_name_is_not_made(cache_dir):
    bad = '/sys/fs/bpf/vswtest-"quoted"'
    with pytest.raises(Unavailable, match="must not contain quotes"):
        Datapath(bad, cache_dir=cache_dir)
    assert not os.path.exists(bad)


def _insns(*insns: tuple[int, int, int, int]) -> bytes:
    return b"".join(struct.pack("<BBhi", *insn) for insn in insns)


_EXIT = (0x95, 0, 0, 0)
_FUNC_IMM = (0x18, 4 << 4 | 2, 0, 1)  # r2 = callback 1 (BPF_PSEUDO_FUNC), first half


def _callback(*head: tuple[int, int, int, int]) -> dict[int, tuple[str, bytes]]:
    return {1: ("cb", _insns(*head, _EXIT))}


def test_a_loop_callback_is_appended_and_its_immediates_point_at_it():
    code = _insns(_FUNC_IMM, (0, 0, 0, 0), (0xB7, 1, 0, 4), _FUNC_IMM, (0, 0, 0, 0), _EXIT)
    body = _insns((0xBF, 1 << 4 | 6, 0, 0), (0xBF, 2 << 4 | 7, 0, 0), _EXIT)
    linked, funcs = compiler.link_callbacks(code, {1: ("cb", body)}.__getitem__)
    assert linked == _insns(  # one copy of the callback, at instruction 6, for both
        (0x18, 4 << 4 | 2, 0, 5), (0, 0, 0, 0), (0xB7, 1, 0, 4),
        (0x18, 4 << 4 | 2, 0, 2), (0, 0, 0, 0), _EXIT) + body
    assert funcs == [(6, "cb")]
    assert compiler.link_callbacks(_insns(_EXIT), _callback().__getitem__) == (_insns(_EXIT), [])


@pytest.mark.parametrize("head", [
    [],                                                     # no LOOP_ARGS
    [(0xBF, 1 << 4 | 2, 0, 0), (0xBF, 2 << 4 | 3, 0, 0)],  # r2 = r1 overwrote the state
    [(0xB7, 2, 0, 0), (0xBF, 1 << 4 | 6, 0, 0), (0xBF, 2 << 4 | 7, 0, 0)],  # r2 written first
    [(0x05, 0, 0, 0), (0xBF, 1 << 4 | 6, 0, 0), (0xBF, 2 << 4 | 7, 0, 0)],  # a jump first
])
def test_a_callback_that_does_not_take_its_arguments_first_is_refused(head):
    with pytest.raises(ValueError, match="does not begin with LOOP_ARGS"):
        compiler.link_callbacks(_insns(_FUNC_IMM, (0, 0, 0, 0), _EXIT),
                                _callback(*head).__getitem__)


def test_the_compiled_programs_carry_their_callbacks(bpffs_dir, cache_dir):
    """tc_flood and xdp_flood each take their hook's flood callback, with the BTF records the
    kernel wants for a program with subprograms."""
    Datapath(bpffs_dir, cache_dir=cache_dir).destroy()
    (path,) = Path(cache_dir).glob("*.json")
    programs = json.loads(path.read_text())["programs"]
    assert [name for _, name in programs["flood"]["funcs"]] == ["tc_flood", "flood_member_tc"]
    assert [name for _, name in programs["xdp_flood"]["funcs"]] == ["xdp_flood",
                                                                    "flood_member_xdp"]
    assert programs["ingress"]["funcs"] == [[0, "tc_ingress"]]


def test_the_maps_take_the_configured_limits(bpffs_dir, cache_dir):
    """datapath.max_ports / max_fdb_entries size the maps (a build of their own); a start
    with other limits replaces the pinned maps."""
    from vswitchd.datapath import PortKind, xdpmaps
    from vswitchd.datapath.constants import MAX_PORTS
    from vswitchd.datapath.limits import Limits
    from vswitchd.datapath.pins import map_shape
    from vswitchd.errors import FailedPrecondition

    dp = Datapath(bpffs_dir, cache_dir=cache_dir, limits=Limits(max_ports=32,
                                                                max_fdb_entries=2048))
    try:
        ports = dp._port_maps
        assert ports.ports.max_entries == ports.stats.max_entries == 32
        assert dp._fdb.max_entries == 2048
        fd = obj_get(os.path.join(bpffs_dir, xdpmaps.TX_PIN))
        try:
            assert map_shape(fd)[3] == 32
        finally:
            os.close(fd)
        for i in range(32):  # ports entries only, as a slot is all this is about
            ports.set(1_000_000 + i, 1, PortKind.DEVICE)
        with pytest.raises(FailedPrecondition, match="already has 32 ports, its maximum"):
            ports.set(2_000_000, 1, PortKind.DEVICE)
    finally:
        dp.close()
    dp = Datapath(bpffs_dir, cache_dir=cache_dir)
    try:
        assert dp._port_maps.ports.max_entries == MAX_PORTS
        assert dp._port_maps.get(1_000_000) is None  # made again
    finally:
        dp.destroy()


def test_limits_out_of_range_are_refused(bpffs_dir):
    from vswitchd.datapath.limits import Limits
    from vswitchd.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match=r"datapath.max_ports 0: is not in 16\.\.65535"):
        Datapath(bpffs_dir, limits=Limits(max_ports=0))
    assert not os.path.exists(bpffs_dir)
