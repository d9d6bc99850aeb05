"""What the daemon exposes: the TCP listener needs client certificates unless the configuration
says it is unauthenticated; the state store is for root only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.netns.harness import BIN, HERE, VSWITCHD

pytestmark = pytest.mark.root

ADDRESS = "127.0.0.1:50051"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "1", "-subj", "/CN=vswitchd test CA")
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                      ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("req", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN={name}")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
                 "-out", str(d / f"{name}.pem"), "-extfile", str(d / f"{name}.ext"))
    return d


def config(path: Path, pki: Path, *extra: str) -> str:
    lines = ["tcp:", f"  address: {ADDRESS}", f"  tls_cert: {pki / 'server.pem'}",
             f"  tls_key: {pki / 'server.key'}", *(f"  {line}" for line in extra)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def tls_call(h, pki: Path, with_cert: bool) -> str:
    """`ok` or `refused CODE`: GetStatus over TCP from inside the daemon's namespace."""
    cert = (str(pki / "client.pem"), str(pki / "client.key")) if with_cert else ()
    res = h.run_in(h.ns, str(BIN / "python"), str(HERE / "tlsclient.py"), ADDRESS,
                   str(pki / "ca.pem"), *cert)
    return res.stdout.strip() or res.stderr


def test_tcp_without_client_ca_refuses_to_start(host, tmp_path, pki):
    h = host
    cfg = config(tmp_path / "v.yaml", pki)
    with pytest.raises(RuntimeError) as ei:
        h.start("--config", cfg, timeout=30)
    assert f"{cfg}:2: tcp.tls_client_ca is required" in str(ei.value)
    assert "tcp.unauthenticated_clients: true" in str(ei.value)
    assert h.proc.returncode == 1
    res = subprocess.run([VSWITCHD, "--check-config", "--config", cfg], capture_output=True,
                         text=True)
    assert res.returncode == 1 and "tcp.tls_client_ca is required" in res.stderr


def test_tcp_with_client_ca_wants_a_client_certificate(host, tmp_path, pki):
    h = host
    h.start("--config", config(tmp_path / "v.yaml", pki, f"tls_client_ca: {pki / 'ca.pem'}",
                               "roles: {reader: [CN=client]}"))
    assert tls_call(h, pki, with_cert=True) == "ok"
    assert tls_call(h, pki, with_cert=False) == "refused UNAVAILABLE"  # the handshake fails
    assert "unauthenticated" not in h.log()


def test_unauthenticated_tcp_only_when_said_and_with_a_warning(host, tmp_path, pki):
    h = host
    h.start("--config", config(tmp_path / "v.yaml", pki, "unauthenticated_clients: true"))
    assert tls_call(h, pki, with_cert=False) == "ok"
    warning = [line for line in h.log().splitlines() if " WARNING " in line
               and "tcp.unauthenticated_clients: true" in line]
    assert warning and f"the TCP listener on {ADDRESS} accepts every TLS client" in warning[0]


def _modes(state_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mode & 0o777 for p in state_dir.iterdir()}


def test_state_store_files_are_private(host):
    h = host
    state = Path(h.state_dir)
    assert not state.exists()
    old = os.umask(0o022)  # the daemon inherits it: what a shell gives
    try:
        h.start()
    finally:
        os.umask(old)
    h.vswctl("add-br", "br0", "--datapath", "kernel")
    assert state.stat().st_mode & 0o777 == 0o700  # made by the daemon
    assert _modes(state) == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    h.stop()
    # an existing directory keeps its mode; the store made in it is private all the same
    for p in state.iterdir():
        p.unlink()
    state.chmod(0o755)
    h.start()
    h.vswctl("add-br", "br1", "--datapath", "kernel")
    assert state.stat().st_mode & 0o777 == 0o755
    assert _modes(state) == {"state.db": 0o600, "state.db-wal": 0o600, "state.db-shm": 0o600}
    assert "readable by other users" not in h.log()
    h.stop()
    (state / "state.db").chmod(0o644)  # e.g. restored from a backup
    h.start()
    assert f"state store {state / 'state.db'} is readable by other users (mode 0644)" in h.log()
