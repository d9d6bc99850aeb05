"""A real vswitchd in a network namespace of its own ("the host"), driven through vswctl.

Everything a test creates carries a random tag: the host namespace, container namespaces, the
bpffs pin directory. cleanup() stops the daemon (by its PID) and removes all of it, also after
a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from pyroute2 import NetNS, netns

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
VSWITCHD = str(BIN / "vswitchd")
VSWCTL = str(BIN / "vswctl")
SYSTEM_PYTHON = "/usr/bin/python3"
NETNS_DIR = "/run/netns"


_libc = ctypes.CDLL(None, use_errno=True)
SYS_BPF, BPF_OBJ_GET, BPF_MAP_GET_NEXT_KEY = 321, 7, 4
# (port_stats is an array: always full, its slots are zeroed when given to a port)
PINNED_KEY_SIZES = {"ports": 4, "members": 4, "fdb": 12}


def pinned_map_entries(path: str, key_size: int) -> int:
    """Number of entries in a pinned BPF map, read with the bpf() syscall (no bcc needed)."""
    name = ctypes.create_string_buffer(path.encode())
    attr = (ctypes.c_uint64 * 16)()
    attr[0] = ctypes.addressof(name)
    fd = _libc.syscall(SYS_BPF, BPF_OBJ_GET, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        raise OSError(ctypes.get_errno(), f"BPF_OBJ_GET {path}")
    try:
        count, key, next_key = 0, None, ctypes.create_string_buffer(key_size)
        while True:
            attr = (ctypes.c_uint64 * 16)()
            attr[0] = fd  # map_fd (u32) then key pointer at offset 8, next_key at 16
            attr[1] = ctypes.addressof(key) if key is not None else 0
            attr[2] = ctypes.addressof(next_key)
            if _libc.syscall(SYS_BPF, BPF_MAP_GET_NEXT_KEY, ctypes.byref(attr),
                             ctypes.sizeof(attr)) != 0:
                return count
            count += 1
            key = ctypes.create_string_buffer(next_key.raw, key_size)
    finally:
        os.close(fd)


def trafgen_udp_config(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, dport: int,
                       frame_len: int = 60, ip_options: int = 0) -> str:
    """trafgen config of one Ethernet/IPv4/UDP frame of FRAME_LEN bytes (without FCS); trafgen
    fills in the IPv4 checksum. Its TX_RING frames keep only the Ethernet header linear.
    ip_options: that many 4-byte words of IPv4 options (NOPs) after the header."""
    ihl = 20 + 4 * ip_options
    payload = frame_len - 14 - ihl - 8
    ip_len, udp_len = ihl + 8 + payload, 8 + payload

    def macb(mac: str) -> list[str]:
        return [f"0x{b}" for b in mac.split(":")]

    def ipb(ip: str) -> list[str]:
        return ip.split(".")

    fields = [
        *macb(dst_mac), *macb(src_mac), "0x08", "0x00",                  # Ethernet
        f"0x{0x40 | ihl // 4:02x}", "0x00", f"c16({ip_len})", "c16(1)", "0x40", "0x00",  # IPv4
        "64", "17", f"csumip(14, {14 + ihl - 1})", *ipb(src_ip), *ipb(dst_ip),  # ttl, udp, csum
        *["0x01"] * (4 * ip_options),                                    # options: NOPs
        "c16(1024)", f"c16({dport})", f"c16({udp_len})", "c16(0)",       # UDP, no checksum
        f"fill(0x00, {payload})",
    ]
    return "{\n  " + ",\n  ".join(fields) + "\n}\n"


class Host:
    def __init__(self, workdir: Path) -> None:
        self.tag = "t" + secrets.token_hex(3)
        self.ns = f"{self.tag}-host"
        self.workdir = workdir
        self.socket = str(workdir / "vswitchd.sock")
        self.state_dir = str(workdir / "state")
        self.bpffs_dir = f"/sys/fs/bpf/vswt-{self.tag}"
        self.log_path = workdir / "vswitchd.log"
        self.proc: subprocess.Popen | None = None
        self._helpers: list[subprocess.Popen] = []
        netns.create(self.ns)
        with NetNS(self.ns) as ns:
            ns.link("set", index=1, state="up")

    # ---- daemon ---------------------------------------------------------------------------

    def start(self, *extra: str, timeout: float = 120.0) -> float:
        """Start vswitchd in the host namespace; return seconds until it answered."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the child's lifetime
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR}/{self.ns}", VSWITCHD, "--socket", self.socket,
             "--state-dir", self.state_dir, "--bpffs-dir", self.bpffs_dir,
             "--log-level", "debug", *extra],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vswitchd exited with {self.proc.returncode}:\n{self.log()}")
            if self.vswctl("status", check=False).returncode == 0:
                return time.monotonic() - t0
            time.sleep(0.2)
        raise RuntimeError(f"vswitchd not ready after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    # ---- commands ---------------------------------------------------------------------------

    def vswctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run([VSWCTL, "--socket", self.socket, *args], capture_output=True,
                             text=True, timeout=60)
        if check and res.returncode != 0:
            raise AssertionError(
                f"vswctl {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}"
            )
        return res

    def json(self, *args: str) -> object:
        return json.loads(self.vswctl("-j", *args).stdout)

    def name(self, short: str) -> str:
        """A namespace name owned by this test (cleaned up with it)."""
        return f"{self.tag}{short}"

    def run_in(self, ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a command with only the network namespace switched (bpffs stays visible)."""
        return subprocess.run(["nsenter", f"--net={NETNS_DIR}/{ns}", *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def spawn_in(self, ns: str, *cmd: str) -> subprocess.Popen:
        proc = subprocess.Popen(["nsenter", f"--net={NETNS_DIR}/{ns}", *cmd],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._helpers.append(proc)
        line = proc.stdout.readline()
        assert line.strip() == "ready", f"{cmd} did not start: {line}{proc.stderr.read()}"
        return proc

    def ping(self, ns: str, addr: str, count: int = 2) -> bool:
        res = self.run_in(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "2", addr)
        return res.returncode == 0

    def udp_server(self, ns: str, port: int = 7) -> subprocess.Popen:
        return self.spawn_in(ns, SYSTEM_PYTHON, str(HERE / "udpecho.py"), "serve", str(port))

    def udp_ask(self, ns: str, addr: str, port: int = 7) -> bool:
        res = self.run_in(ns, SYSTEM_PYTHON, str(HERE / "udpecho.py"), "ask", addr, str(port))
        return res.returncode == 0

    def vm(self, tap: str, mac: str, ip: str, *extra: str) -> subprocess.Popen:
        """A process holding TAP open like QEMU, answering ARP, ping and UDP echo on port 7."""
        return self.spawn_in(self.ns, SYSTEM_PYTHON, str(HERE / "vmstub.py"), "--tap", tap,
                             "--mac", mac, "--ip", ip, *extra)

    def vm_ping(self, tap: str, mac: str, ip: str, target: str) -> subprocess.CompletedProcess:
        return self.run_in(self.ns, SYSTEM_PYTHON, str(HERE / "vmstub.py"), "--tap", tap,
                           "--mac", mac, "--ip", ip, "--ping", target)

    def links(self, ns: str | None = None) -> set[str]:
        with NetNS(ns or self.ns) as ipr:
            return {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}

    def pinned_entries(self) -> dict[str, int]:
        """Entries per pinned datapath map of this daemon."""
        return {name: pinned_map_entries(f"{self.bpffs_dir}/{name}", size)
                for name, size in PINNED_KEY_SIZES.items()}

    def namespaces(self) -> set[str]:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith(self.tag)} - {self.ns}

    def containers_bridge(self, octet: int) -> None:
        """br0 at 10.OCTET.0.1/24 (eBPF) with containers c1, c2, m0 at .11, .12, .13 (MACs
        02:OCTET:00:00:00:0b..0d) and UDP echo servers on ports 7 and 8 in c2."""
        self.start()
        self.vswctl("add-br", "br0", "--ip", f"10.{octet}.0.1/24")
        for name, last in (("c1", 11), ("c2", 12), ("m0", 13)):
            self.vswctl("add-port", "br0", name, "--netns", self.name(name), "--ip",
                        f"10.{octet}.0.{last}/24", "--mac", f"02:{octet}:00:00:00:{last:02x}")
        for port in (7, 8):
            self.udp_server(self.name("c2"), port)

    # ---- teardown ---------------------------------------------------------------------------

    def cleanup(self) -> None:
        for proc in self._helpers:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self.stop()
        for name in os.listdir(NETNS_DIR):
            if name.startswith(self.tag):
                with contextlib.suppress(OSError):
                    netns.remove(name)
        shutil.rmtree(self.bpffs_dir, ignore_errors=True)
