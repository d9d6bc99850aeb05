"""BPF_PROG_TEST_RUN through the bpf() syscall (bcc 0.26 has no wrapper).

For SCHED_CLS programs the context is a `struct __sk_buff`. The kernel (convert___skb_to_skb)
accepts only a few input fields and requires all others to be zero: mark, priority,
ingress_ifindex, ifindex, cb[0..4], tstamp, wire_len, gso_segs, gso_size, hwtstamp. We pass the
head of the struct up to cb[] (a shorter ctx_size_in is allowed; the rest counts as zero).
ifindex > 1 must name a device of the current network namespace (else ENODEV); the frame must
hold at least an Ethernet header (else EINVAL).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from vswitchd.datapath.bpfsys import BPF_PROG_TEST_RUN, bpf, obj_info

ETH_HLEN = 14


class _TestAttr(ctypes.Structure):
    """The `test` member of union bpf_attr (padded to the size the kernel may read)."""

    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


class SkbCtx(ctypes.Structure):
    """The head of struct __sk_buff (uapi/linux/bpf.h), through cb[5]."""

    _fields_ = [
        ("len", ctypes.c_uint32),
        ("pkt_type", ctypes.c_uint32),
        ("mark", ctypes.c_uint32),
        ("queue_mapping", ctypes.c_uint32),
        ("protocol", ctypes.c_uint32),
        ("vlan_present", ctypes.c_uint32),
        ("vlan_tci", ctypes.c_uint32),
        ("vlan_proto", ctypes.c_uint32),
        ("priority", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("ifindex", ctypes.c_uint32),
        ("tc_index", ctypes.c_uint32),
        ("cb", ctypes.c_uint32 * 5),
    ]


assert ctypes.sizeof(SkbCtx) == 68


class XdpCtx(ctypes.Structure):
    """struct xdp_md (uapi/linux/bpf.h). For a test run, data is where the frame starts in
    data_in (the metadata before it), data_end the size of data_in, data_meta 0."""

    _fields_ = [
        ("data", ctypes.c_uint32),
        ("data_end", ctypes.c_uint32),
        ("data_meta", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32),
        ("rx_queue_index", ctypes.c_uint32),
        ("egress_ifindex", ctypes.c_uint32),
    ]


@dataclass(frozen=True)
class TestRunOutput:
    retval: int
    duration_ns: int  # average per repetition, as reported by the kernel
    data: bytes


def prog_test_run_skb(
    prog_fd: int,
    frame: bytes,
    *,
    ifindex: int = 0,
    cb: tuple[int, ...] = (),
    repeat: int = 1,
) -> TestRunOutput:
    """Runs a SCHED_CLS program on `frame` as if received on `ifindex`. Raises OSError."""
    _check(frame, repeat)
    if len(cb) > 5:
        raise ValueError("cb has at most 5 words")
    ctx_in = SkbCtx()
    ctx_in.ifindex = ifindex
    for i, word in enumerate(cb):
        ctx_in.cb[i] = word & 0xFFFFFFFF
    # No ctx_out: the kernel copies back the whole __sk_buff and fails with ENOSPC when the
    # buffer is shorter, and nothing in it is needed here.
    return _run(prog_fd, bytes(frame), ctx_in, repeat)


def prog_test_run_xdp(
    prog_fd: int,
    frame: bytes,
    *,
    ifindex: int,
    meta: bytes = b"",
    repeat: int = 1,
) -> TestRunOutput:
    """Runs an XDP program on `frame` as if received on `ifindex` (a device of the current
    network namespace), with `meta` (a multiple of 4 bytes, at most 32) as the frame's
    metadata. Raises OSError. A redirect is only returned, not done (no live-frames mode)."""
    _check(frame, repeat)
    if len(meta) % 4 or len(meta) > 32:
        raise ValueError("meta must be a multiple of 4 bytes, at most 32")
    payload = bytes(meta) + bytes(frame)
    out = _run(prog_fd, payload, XdpCtx(len(meta), len(payload), 0, ifindex, 0, 0), repeat)
    return TestRunOutput(out.retval, out.duration_ns, out.data[len(meta):])


def _check(frame: bytes, repeat: int) -> None:
    if len(frame) < ETH_HLEN:
        raise ValueError(f"frame of {len(frame)} bytes: the kernel needs at least {ETH_HLEN}")
    if repeat < 1 or repeat > 0xFFFFFFFF:
        raise ValueError(f"repeat {repeat} out of range")


def _run(prog_fd: int, payload: bytes, ctx_in: ctypes.Structure, repeat: int) -> TestRunOutput:
    """BPF_PROG_TEST_RUN of payload with ctx_in; the data out as long as the kernel wrote."""
    data_in = ctypes.create_string_buffer(payload, len(payload))
    out_size = len(payload) + 256
    data_out = ctypes.create_string_buffer(out_size)
    attr = _TestAttr()
    attr.prog_fd = prog_fd
    attr.data_size_in = len(payload)
    attr.data_in = ctypes.addressof(data_in)
    attr.data_size_out = out_size
    attr.data_out = ctypes.addressof(data_out)
    attr.repeat = repeat
    attr.ctx_size_in = ctypes.sizeof(ctx_in)
    attr.ctx_in = ctypes.addressof(ctx_in)
    bpf(BPF_PROG_TEST_RUN, attr, "BPF_PROG_TEST_RUN")
    size = min(attr.data_size_out, out_size)
    return TestRunOutput(retval=attr.retval, duration_ns=attr.duration, data=data_out.raw[:size])


_VERIFIED_INSNS_OFFSET = 216  # struct bpf_prog_info.verified_insns (uapi, kernel >= 5.16)


def verified_insns(prog_fd: int) -> int:
    """How many instructions the verifier processed for the program (`processed N insns`);
    0 when the kernel does not report it."""
    info = obj_info(prog_fd)
    if len(info) < _VERIFIED_INSNS_OFFSET + 4:
        return 0
    return int.from_bytes(info[_VERIFIED_INSNS_OFFSET:_VERIFIED_INSNS_OFFSET + 4], "little")
