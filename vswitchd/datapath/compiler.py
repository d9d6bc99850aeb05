"""The compiler process: `python -m vswitchd.datapath.compiler SCRATCH_DIR` reads datapath
source on stdin, compiles it with bcc and writes the compiled object (objfile.py) as JSON on
stdout. It is the only place that imports bcc, and it exits when done, so bcc's LLVM (150 MiB
of resident memory) never stays in the daemon.

bcc creates the maps while compiling and writes their fds into the instructions; the scratch
bpffs directory takes the pinned ones, and is removed afterwards. The object records, for each
of those instructions, the name of the map it names, so the loader (build.py) can put the
daemon's own map fds there. Nothing is loaded into the kernel here."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import struct
import sys

from vswitchd.datapath import build, objfile, pins, xdpmaps

_INSN = struct.Struct("<BBhi")
_LD_IMM64 = 0x18       # BPF_LD | BPF_IMM | BPF_DW: the first half of a 64-bit immediate
_PSEUDO_MAP_FD = 1     # its src_reg when the immediate is a map fd


def _map_shape(fd: int) -> dict:
    info = pins.map_info(fd)
    return {name: info[key] for name, key in (
        ("type", "map_type"), ("key_size", "key_size"), ("value_size", "value_size"),
        ("max_entries", "max_entries"), ("flags", "map_flags"))}


def relocations(code: bytes, names: dict[int, str]) -> list[tuple[int, str]]:
    """(instruction index, map name) of every map-fd immediate in code; names maps the
    compiler's fds to map names."""
    out = []
    for i in range(len(code) // _INSN.size):
        op, regs, _off, imm = _INSN.unpack_from(code, i * _INSN.size)
        if op == _LD_IMM64 and regs >> 4 == _PSEUDO_MAP_FD:
            if imm not in names:
                raise ValueError(f"instruction {i} names fd {imm}, which is no map of the build")
            out.append((i, names[imm]))
    return out


def compile_object(body: str, scratch_dir: str) -> dict:
    """The compiled object of datapath source body (build.source_body) as a JSON-ready dict."""
    from bcc import BPF
    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pins.make_dir(scratch_dir)
    xdpmaps.ensure_pins(scratch_dir)  # before bcc, which would make them of another type
    loaded = BPF(text=(build.pin_dir_define(scratch_dir) + body).encode())
    module = loaded.module
    maps: dict[str, dict] = {}
    by_fd: dict[int, str] = {}
    for i in range(lib.bpf_num_tables(module)):
        raw = lib.bpf_table_name(module, i)
        name = raw.decode()
        fd = lib.bpf_table_fd(module, raw)
        by_fd[fd] = name
        maps[name] = {**_map_shape(fd),
                      "key": json.loads(lib.bpf_table_key_desc(module, raw)),
                      "leaf": json.loads(lib.bpf_table_leaf_desc(module, raw))}
    programs = {}
    for hook, (func, prog_type, attach_type) in build.PROGRAMS.items():
        code = loaded.dump_func(func.encode())
        programs[hook] = {"name": func, "type": prog_type, "attach_type": attach_type,
                          "insns": code.hex(), "relocations": relocations(code, by_fd)}
    return {"format": objfile.FORMAT, "license": lib.bpf_module_license(module).decode(),
            "kern_version": lib.bpf_module_kern_version(module), "maps": maps,
            "programs": programs}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vswitchd.datapath.compiler SCRATCH_DIR < SOURCE > OBJECT",
              file=sys.stderr)
        return 2
    scratch_dir = argv[0]
    try:
        obj = compile_object(sys.stdin.read(), scratch_dir)
    except Exception as exc:  # bcc raises bare Exception; the parent shows the last line
        print(str(exc).strip() or repr(exc), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(scratch_dir, ignore_errors=True)  # bpffs: unlinking a pin is enough
    json.dump(obj, sys.stdout)
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main(sys.argv[1:]))
