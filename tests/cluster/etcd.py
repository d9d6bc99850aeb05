"""Real etcd servers (/usr/bin/etcd, Debian's etcd-server) for the cluster tests: on loopback,
free ports, a temporary data directory; stopped by their PID."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ETCD = "/usr/bin/etcd"


_given: set[int] = set()  # ports free_port() returned in this process


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. One that bind(0) picks is in
    that range, and in the time until etcd binds it an outgoing connection (a member's to
    another) may be given it as its source port: etcd then fails with "address already in
    use". Outgoing connections never get a port below the range."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(1000):
        port = random.randrange(max(1024, low // 2), low)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free loopback port below {low}")


class EtcdMember:
    def __init__(self, workdir: Path, name: str, client_port: int, peer_port: int,
                 initial_cluster: str, token: str) -> None:
        self.name = name
        self.workdir = workdir
        self.client_port, self.peer_port = client_port, peer_port
        self.url = f"http://127.0.0.1:{client_port}"
        self.data_dir = workdir / f"{name}.etcd"
        self.log_path = workdir / f"{name}.log"
        self.initial_cluster, self.token = initial_cluster, token
        self.proc: subprocess.Popen | None = None

    def start(self, state: str = "new") -> None:
        if not os.path.exists(ETCD):
            raise RuntimeError(f"{ETCD} is missing: install Debian's etcd-server (make setup)")
        log = open(self.log_path, "a")  # noqa: SIM115 - the child's
        self.proc = subprocess.Popen(
            [ETCD, "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
             "--initial-cluster", self.initial_cluster,
             "--initial-cluster-token", self.token, "--initial-cluster-state", state,
             "--heartbeat-interval", "50", "--election-timeout", "500",
             "--log-level", "warn", "--logger", "zap"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"etcd {self.name} exited {self.proc.returncode}:\n"
                                   f"{self.log()}")
            with contextlib.suppress(requests.RequestException):
                r = requests.get(self.url + "/health", timeout=1)
                if r.status_code == 200 and r.json().get("health") == "true":
                    return
            time.sleep(0.1)
        raise RuntimeError(f"etcd {self.name} not healthy after {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


class EtcdCluster:
    def __init__(self, workdir: Path, size: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        token = f"vswt-{os.getpid()}-{time.monotonic_ns()}"
        ports = [(free_port(), free_port()) for _ in range(size)]
        initial = ",".join(f"m{i}=http://127.0.0.1:{pp}" for i, (_, pp) in enumerate(ports))
        self.members = [EtcdMember(workdir, f"m{i}", cp, pp, initial, token)
                        for i, (cp, pp) in enumerate(ports)]

    @property
    def urls(self) -> str:
        return ",".join(m.url for m in self.members)

    def start(self) -> None:
        for m in self.members:
            m.start()
        for m in self.members:
            m.wait_ready()

    def cleanup(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                m.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(f"---- etcd {m.name} ----\n{m.log()}" for m in self.members)
