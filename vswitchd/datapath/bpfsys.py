"""The bpf() syscall through ctypes, for the commands bcc 0.26 has no wrapper for (test runs,
object info, TCX and XDP links). Attributes are ctypes structures laid out as in
uapi/linux/bpf.h."""

from __future__ import annotations

import ctypes
import errno
import os
import struct

SYS_BPF = 321  # x86_64

# enum bpf_cmd
BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_TEST_RUN = 10
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_BTF_LOAD = 18
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def bpf(cmd: int, attr: ctypes.Structure | None, what: str) -> int:
    """Runs bpf(cmd, &attr, sizeof attr), or bpf(cmd, NULL, 0) without attr; returns its
    result (an fd for the commands that make one). Raises OSError naming `what` and the errno."""
    ptr, size = (ctypes.byref(attr), ctypes.sizeof(attr)) if attr is not None else (None, 0)
    ret = _libc.syscall(SYS_BPF, cmd, ptr, size)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} failed: {os.strerror(err)}")
    return ret


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32),
                ("info", ctypes.c_uint64)]


def obj_info(fd: int, size: int = 256, buf: ctypes.Array | None = None) -> bytes:
    """The kernel's struct bpf_{prog,map,link}_info of fd, as many bytes as it filled. buf:
    the info to start from (pointers to arrays the kernel fills, and their sizes)."""
    buf = buf if buf is not None else ctypes.create_string_buffer(size)
    attr = _InfoAttr(fd, len(buf), ctypes.addressof(buf))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr, "BPF_OBJ_GET_INFO_BY_FD")
    return buf.raw[:attr.info_len]


def object_id(fd: int) -> int:
    """The kernel's id of a BPF program, map or link (its info struct: type, then id)."""
    return int.from_bytes(obj_info(fd, 8)[4:8], "little")


class LinkCreate(ctypes.Structure):
    """BPF_LINK_CREATE's attributes, with the tcx member of the union (zero for XDP)."""
    _fields_ = [("prog_fd", ctypes.c_uint32), ("target_ifindex", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("relative_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("expected_revision", ctypes.c_uint64)]


class LinkUpdate(ctypes.Structure):
    _fields_ = [("link_fd", ctypes.c_uint32), ("new_prog_fd", ctypes.c_uint32),
                ("flags", ctypes.c_uint32), ("old_prog_fd", ctypes.c_uint32)]


class ByFd(ctypes.Structure):
    """The attributes of the commands that take one fd (BPF_LINK_DETACH)."""
    _fields_ = [("fd", ctypes.c_uint32)]


class ObjPath(ctypes.Structure):
    _fields_ = [("pathname", ctypes.c_uint64), ("bpf_fd", ctypes.c_uint32),
                ("file_flags", ctypes.c_uint32)]


def obj_path(path: str, fd: int = 0) -> tuple[ObjPath, ctypes.Array]:
    """BPF_OBJ_PIN/BPF_OBJ_GET attributes for path, and the buffer they point into (keep it
    referenced until the call is done)."""
    raw = ctypes.create_string_buffer(os.fsencode(path))
    return ObjPath(ctypes.addressof(raw), fd, 0), raw


def obj_get(path: str) -> int:
    """An fd of the object pinned at path."""
    attr, _raw = obj_path(path)
    return bpf(BPF_OBJ_GET, attr, f"opening {path}")


def obj_pin(fd: int, path: str) -> None:
    attr, _raw = obj_path(path, fd)
    bpf(BPF_OBJ_PIN, attr, f"pinning {path}")


class _MapCreate(ctypes.Structure):
    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32),
                ("map_flags", ctypes.c_uint32), ("inner_map_fd", ctypes.c_uint32),
                ("numa_node", ctypes.c_uint32), ("map_name", ctypes.c_char * 16)]


class _MapElem(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("key", ctypes.c_uint64), ("value", ctypes.c_uint64),
                ("flags", ctypes.c_uint64)]


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str,
               inner_map_fd: int = 0, flags: int = 0) -> int:
    """A new map's fd (BPF_MAP_CREATE)."""
    attr = _MapCreate(map_type, key_size, value_size, max_entries, flags, inner_map_fd, 0,
                      name.encode()[:15])
    return bpf(BPF_MAP_CREATE, attr, f"creating map {name}")


def map_update(fd: int, key: bytes, value: bytes, what: str) -> None:
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value, len(value))
    bpf(BPF_MAP_UPDATE_ELEM, _MapElem(fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0), what)


def map_lookup(fd: int, key: bytes, value_size: int, what: str) -> bytes | None:
    """The value at key; None when there is none. (A map of maps answers its inner map's id.)"""
    k = ctypes.create_string_buffer(key, len(key))
    v = ctypes.create_string_buffer(value_size)
    try:
        bpf(BPF_MAP_LOOKUP_ELEM, _MapElem(fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0),
            what)
    except FileNotFoundError:
        return None
    return v.raw


def map_fd_by_id(map_id: int, what: str) -> int:
    return bpf(BPF_MAP_GET_FD_BY_ID, ByFd(map_id), what)


def map_delete(fd: int, key: bytes, what: str) -> bool:
    """False if the key was not there."""
    k = ctypes.create_string_buffer(key, len(key))
    try:
        bpf(BPF_MAP_DELETE_ELEM, _MapElem(fd, 0, ctypes.addressof(k), 0, 0), what)
    except FileNotFoundError:
        return False
    return True


def map_keys(fd: int, key_size: int, what: str) -> list[bytes]:
    """Every key of a hash-like map."""
    keys: list[bytes] = []
    prev = None
    nxt = ctypes.create_string_buffer(key_size)
    while True:
        cur = ctypes.create_string_buffer(prev, key_size) if prev is not None else None
        attr = _MapElem(fd, 0, ctypes.addressof(cur) if cur is not None else 0,
                        ctypes.addressof(nxt), 0)
        try:
            bpf(BPF_MAP_GET_NEXT_KEY, attr, what)
        except FileNotFoundError:
            return keys
        prev = nxt.raw
        keys.append(prev)


BPF_PROG_TYPE_XDP = 6


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32),
                ("insns", ctypes.c_uint64), ("license", ctypes.c_uint64),
                ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32),
                ("prog_flags", ctypes.c_uint32), ("prog_name", ctypes.c_char * 16),
                ("prog_ifindex", ctypes.c_uint32), ("expected_attach_type", ctypes.c_uint32),
                ("prog_btf_fd", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
                ("func_info", ctypes.c_uint64), ("func_info_cnt", ctypes.c_uint32)]


class _BtfLoad(ctypes.Structure):
    _fields_ = [("btf", ctypes.c_uint64), ("log_buf", ctypes.c_uint64),
                ("btf_size", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_level", ctypes.c_uint32)]


VERIFIER_LOG_SIZE = 1 << 20
_BTF_KIND_INT, _BTF_KIND_FUNC, _BTF_KIND_FUNC_PROTO = 1, 12, 13


def func_btf(names: list[str]) -> bytes:
    """The BTF a program with subprograms must come with: `long NAME(void)` for each name, its
    types 3, 4, ... in order (static: the verifier checks the arguments of global ones only)."""
    strings = bytearray(b"\0long\0")
    types = struct.pack("<IIII", 1, _BTF_KIND_INT << 24, 8, 64 | 1 << 24)  # 1: long
    types += struct.pack("<III", 0, _BTF_KIND_FUNC_PROTO << 24, 1)          # 2: long (void)
    for name in names:
        types += struct.pack("<III", len(strings), _BTF_KIND_FUNC << 24, 2)
        strings += name.encode() + b"\0"
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + bytes(strings)


def btf_load(blob: bytes) -> int:
    buf = ctypes.create_string_buffer(blob, len(blob))
    return bpf(BPF_BTF_LOAD, _BtfLoad(ctypes.addressof(buf), 0, len(blob)), "BPF_BTF_LOAD")


def prog_load(prog_type: int, insns: bytes, name: str, license: str = "GPL",
              kern_version: int = 0, attach_type: int = 0,
              funcs: list[tuple[int, str]] | None = None) -> int:
    """A program of raw instructions (8 bytes each). funcs: its functions as (first
    instruction, name), the program's own first, when it has subprograms (a bpf_loop's
    callback). When the verifier refuses it, it is loaded once more for the verifier's log,
    whose last lines the OSError carries."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license.encode())
    funcs = funcs if funcs and len(funcs) > 1 else []  # a lone program needs no records
    btf_fd = btf_load(func_btf([fn for _, fn in funcs])) if funcs else 0
    # struct bpf_func_info: (first instruction, BTF type id), the FUNC types from 3 on
    records = (ctypes.c_uint32 * (2 * len(funcs) or 1))(
        *(v for k, (start, _) in enumerate(funcs) for v in (start, 3 + k)))

    def attr(log_level: int = 0, log=None) -> _ProgLoad:
        return _ProgLoad(prog_type, len(insns) // 8, ctypes.addressof(code),
                         ctypes.addressof(lic), log_level, len(log) if log else 0,
                         ctypes.addressof(log) if log else 0, kern_version, 0,
                         name.encode()[:15], 0, attach_type, btf_fd, 8 if funcs else 0,
                         ctypes.addressof(records) if funcs else 0, len(funcs))

    try:
        try:
            return bpf(BPF_PROG_LOAD, attr(), f"loading program {name}")
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EACCES, errno.E2BIG):
                raise
            first = exc
        log = ctypes.create_string_buffer(VERIFIER_LOG_SIZE)
        try:
            return bpf(BPF_PROG_LOAD, attr(1, log), f"loading program {name}")
        except OSError:
            tail = " | ".join(log.value.decode(errors="replace").strip().splitlines()[-3:])
            raise OSError(first.errno, f"{first.strerror}; the verifier says: {tail}") from None
    finally:
        if btf_fd:
            os.close(btf_fd)  # the program holds its BTF
