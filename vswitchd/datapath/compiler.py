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
from collections.abc import Callable

from vswitchd.datapath import build, constants, objfile, pins, xdpmaps

_INSN = struct.Struct("<BBhi")
_LD_IMM64 = 0x18       # BPF_LD | BPF_IMM | BPF_DW: the first half of a 64-bit immediate
_PSEUDO_MAP_FD = 1     # its src_reg when the immediate is a map fd
_PSEUDO_FUNC = 4       # its src_reg when the immediate is a subprogram (a loop callback)
_MOV64_REG = 0xBF      # BPF_ALU64 | BPF_MOV | BPF_X: dst = src
_JMP, _JMP32 = 0x05, 0x06  # instruction classes: jumps, calls, exit


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


def _reads_loop_args(body: bytes) -> bool:
    """Whether a callback copies r1 and r2 (LOOP_ARGS) before anything can change them: the
    instructions before the copies neither jump nor write r1 or r2, and the copy of r1 does not
    go to r2."""
    insns = list(_INSN.iter_unpack(body))
    for i, (op, regs, _off, _imm) in enumerate(insns[:-1]):
        (next_op, next_regs, _, _) = insns[i + 1]
        if (op == _MOV64_REG and regs >> 4 == 1 and regs & 0xF != 2
                and next_op == _MOV64_REG and next_regs >> 4 == 2):
            return True
        if op & 0x07 in (_JMP, _JMP32) or regs & 0xF in (1, 2):
            return False
    return False


def link_callbacks(code: bytes, callback: Callable[[int], tuple[str, bytes]]
                   ) -> tuple[bytes, list[tuple[int, str]]]:
    """code with the loop callbacks it names (bpf/lib/loop.h) appended, each immediate pointed
    at its callback; and the callbacks as (first instruction, name). callback(number) gives a
    callback's name and compiled code."""
    out = bytearray(code)
    starts: dict[int, int] = {}
    funcs: list[tuple[int, str]] = []
    for i in range(len(code) // _INSN.size):
        op, regs, off, imm = _INSN.unpack_from(code, i * _INSN.size)
        if op != _LD_IMM64 or regs >> 4 != _PSEUDO_FUNC:
            continue
        if imm not in starts:
            name, body = callback(imm)
            if not _reads_loop_args(body):
                raise ValueError(f"loop callback {name} does not begin with LOOP_ARGS")
            if any(o == _LD_IMM64 and r >> 4 == _PSEUDO_FUNC
                   for o, r, _, _ in _INSN.iter_unpack(body)):
                raise ValueError(f"loop callback {name} names a callback itself")
            starts[imm] = len(out) // _INSN.size
            funcs.append((starts[imm], name))
            out += body
        _INSN.pack_into(out, i * _INSN.size, op, regs, off, starts[imm] - (i + 1))
    return bytes(out), funcs


def _max_ports(body: str) -> int:
    """The MAX_PORTS in force in body: its first define (a limit defined before common.h's
    default); the default when none (such a body fails in bcc, which says why)."""
    try:
        return constants.parse_define(body, "MAX_PORTS")
    except ValueError:
        return constants.MAX_PORTS


def compile_object(body: str, scratch_dir: str) -> dict:
    """The compiled object of datapath source body (build.source_body) as a JSON-ready dict."""
    from bcc import BPF
    from bcc.libbcc import lib

    lib.bpf_num_tables.restype = ctypes.c_size_t
    lib.bpf_num_tables.argtypes = [ctypes.c_void_p]
    lib.bpf_table_name.restype = ctypes.c_char_p
    lib.bpf_table_name.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pins.make_dir(scratch_dir)
    # before bcc, which would make them of another type
    xdpmaps.ensure_pins(scratch_dir, _max_ports(body))
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
    callbacks = {number: (name, loaded.dump_func(name.encode()))
                 for number, name in constants.LOOP_CALLBACKS.items()}

    def callback(number: int) -> tuple[str, bytes]:
        if number not in callbacks:
            raise ValueError(f"no loop callback {number} in LOOP_CALLBACKS")
        return callbacks[number]

    programs = {}
    for hook, (func, prog_type, attach_type) in build.PROGRAMS.items():
        code, funcs = link_callbacks(loaded.dump_func(func.encode()), callback)
        programs[hook] = {"name": func, "type": prog_type, "attach_type": attach_type,
                          "insns": code.hex(), "relocations": relocations(code, by_fd),
                          "funcs": [(0, func), *funcs]}
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
