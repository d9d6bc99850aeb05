"""A frame into an interface's receive path, as if the interface had received it (packet-out
"into the pipeline"): BPF_PROG_TEST_RUN of a two-instruction XDP program that returns XDP_PASS,
in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, kernel 5.18+). The kernel builds an skb of
the frame on the ingress interface and hands it to the stack (net/bpf/test_run.c
xdp_recv_frames -> netif_receive_skb_list), so the interface's TC ingress program (the eBPF
pipeline) or its bridge (a kernel-datapath bridge) switches it like any received frame.
"""

from __future__ import annotations

import ctypes
import os
import threading

from vswitchd.datapath.bpfsys import BPF_PROG_TEST_RUN, BPF_PROG_TYPE_XDP, bpf, prog_load
from vswitchd.datapath.testrun import _TestAttr

BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1
# r0 = XDP_PASS (2); exit
PASS_PROGRAM = bytes.fromhex("b700000002000000" "9500000000000000")


class _XdpMd(ctypes.Structure):
    """struct xdp_md (uapi/linux/bpf.h): data_end is the frame's length, data 0."""

    _fields_ = [("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32),
                ("data_meta", ctypes.c_uint32), ("ingress_ifindex", ctypes.c_uint32),
                ("rx_queue_index", ctypes.c_uint32), ("egress_ifindex", ctypes.c_uint32)]


class Injector:
    """Owns the pass program (loaded on first use) and runs frames through it."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._lock = threading.Lock()

    def _prog(self) -> int:
        if self._fd is None:
            self._fd = prog_load(BPF_PROG_TYPE_XDP, PASS_PROGRAM, "vsw_inject")
        return self._fd

    def receive(self, ifindex: int, frame: bytes) -> None:
        """FRAME is received on IFINDEX (an interface of the caller's network namespace).
        OSError from the kernel as it is (ENODEV: no such interface; EINVAL: a frame it
        refuses)."""
        data = ctypes.create_string_buffer(frame, len(frame))
        ctx = _XdpMd(0, len(frame), 0, ifindex, 0, 0)
        with self._lock:
            attr = _TestAttr(prog_fd=self._prog(), data_size_in=len(frame),
                             data_in=ctypes.addressof(data), repeat=1,
                             ctx_size_in=ctypes.sizeof(ctx), ctx_in=ctypes.addressof(ctx),
                             flags=BPF_F_TEST_XDP_LIVE_FRAMES)
            bpf(BPF_PROG_TEST_RUN, attr, "injecting a frame (BPF_PROG_TEST_RUN, live frames)")

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
