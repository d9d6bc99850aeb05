"""Access control with a real daemon: the reader socket (mode, group, who can connect, what a
reader may do), mTLS certificates mapped to roles, and the audit lines with the callers' real
uid/gid/pid (SO_PEERCRED) and certificate subjects."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.netns.harness import BIN, HERE, VSWCTL, VSWITCHD
from tests.netns.test_security import ADDRESS, _openssl

pytestmark = pytest.mark.root

NOBODY = 65534       # the unprivileged caller's uid
READERS = 65534      # nogroup: the reader group (an existing group; none is created)
OUTSIDER = 100       # users: a group that is not the reader group


@pytest.fixture
def public_dir():
    """A directory others can traverse (tmp_path's parents are root's only), removed after."""
    d = tempfile.mkdtemp(prefix="vswacl-", dir="/tmp")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def vswctl_as(gid: int, socket: str, *args: str) -> subprocess.CompletedProcess:
    """vswctl run as uid NOBODY with GID as its only group."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={gid}", "--clear-groups",
                           VSWCTL, "--socket", socket, *args], capture_output=True, text=True,
                          timeout=60)


def audit_lines(text: str) -> list[str]:
    return [line[line.index("call="):] for line in text.splitlines() if " call=" in line]


def test_reader_socket_reads_refuses_changes_and_audits(host, tmp_path, public_dir):
    h = host
    reader = str(public_dir / "reader.sock")
    audit_log = tmp_path / "audit.log"
    cfg = tmp_path / "v.yaml"
    cfg.write_text(f"api:\n  reader_group: {READERS}\n  reader_socket: {reader}\n"
                   f"  audit_log: {audit_log}\n")
    h.start("--config", str(cfg))
    st = os.stat(reader)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, READERS)
    assert stat.S_IMODE(os.stat(h.socket).st_mode) == 0o600
    assert stat.S_IMODE(audit_log.stat().st_mode) == 0o600

    h.vswctl("add-br", "br0", "--datapath", "kernel")  # root, admin socket: done
    dup = h.vswctl("add-br", "br0", "--datapath", "kernel", check=False)
    assert dup.returncode == 2 and "ALREADY_EXISTS" in dup.stderr

    # a member of the group reads
    res = vswctl_as(READERS, reader, "-j", "list-br")
    assert res.returncode == 0, res.stderr
    assert '"br0"' in res.stdout
    assert vswctl_as(READERS, reader, "status").returncode == 0
    # ... and is refused a change, which does not happen
    res = vswctl_as(READERS, reader, "add-br", "br1", "--datapath", "kernel")
    assert res.returncode == 2
    assert re.search(r"PERMISSION_DENIED: CreateBridge needs the admin role; "
                     rf"uid={NOBODY} gid={READERS} pid=\d+ on unix:{reader} has the reader role "
                     r"\(a reader may only read: changes need root on the admin socket", res.stderr)
    assert "br1" not in h.vswctl("list-br").stdout
    # root on the reader socket is a reader too: the socket decides
    res = h.vswctl("--socket", reader, "del-br", "br0", check=False)
    assert res.returncode == 2 and "PERMISSION_DENIED: DeleteBridge" in res.stderr
    # not a member: cannot connect at all
    res = vswctl_as(OUTSIDER, reader, "status")
    assert res.returncode == 3 and "Permission denied" in res.stderr
    assert "for its group's members" in res.stderr

    lines = audit_lines(audit_log.read_text())
    assert audit_lines(h.log()) == lines  # the daemon log has them too
    admin = rf'role=admin who="uid=0 gid=0 pid=\d+" listener=unix:{re.escape(h.socket)}'
    refused = rf'role=reader who="uid={NOBODY} gid={READERS} pid=\d+" listener=unix:{reader}'
    expected = [
        rf'call=CreateBridge resource="bridge.name=br0" result=OK {admin}',
        rf'call=CreateBridge resource="bridge.name=br0" result=ALREADY_EXISTS {admin}',
        rf'call=CreateBridge resource="bridge.name=br1" result=PERMISSION_DENIED {refused}',
        r'call=DeleteBridge resource="name=br0" result=PERMISSION_DENIED role=reader '
        rf'who="uid=0 gid=0 pid=\d+" listener=unix:{reader}',
    ]
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    h.stop()
    assert not os.path.exists(reader)  # removed on stop


def test_a_missing_reader_group_is_a_start_error(host, tmp_path):
    h = host
    cfg = tmp_path / "v.yaml"
    cfg.write_text("api:\n  reader_group: vswitchd-no-such-group\n")
    message = (f"{cfg}:2: api.reader_group: there is no group 'vswitchd-no-such-group' "
               "(create it, or give a gid)")
    with pytest.raises(RuntimeError) as ei:
        h.start("--config", str(cfg), timeout=30)
    assert message in str(ei.value)
    res = subprocess.run([VSWITCHD, "--check-config", "--config", str(cfg)], capture_output=True,
                         text=True)
    assert res.returncode == 1 and message in res.stderr
    cfg.write_text("tcp:\n  address: 127.0.0.1:1\n  tls_cert: /c\n  tls_key: /k\n"
                   "  tls_client_ca: /ca\n  roles:\n    admin: [DNS:a.example]\n"
                   "    reader: [DNS:A.Example]\n")
    res = subprocess.run([VSWITCHD, "--check-config", "--config", str(cfg)], capture_output=True,
                         text=True)
    assert res.returncode == 1
    assert f"{cfg}:8: tcp.roles.reader: 'DNS:A.Example' is given already on line 7" in res.stderr


def _cert(d: Path, name: str, subject: str, ext: str) -> None:
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    (d / f"{name}.ext").write_text(ext + "\n")
    _openssl("req", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
             "-subj", subject)
    _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
             "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "1",
             "-out", str(d / f"{name}.pem"), "-extfile", str(d / f"{name}.ext"))


@pytest.fixture
def role_pki(tmp_path) -> Path:
    """A CA, the server's certificate and three clients': one whose CN is mapped to admin, one
    whose DNS and URI SANs are (the URI to reader), one mapped to nothing."""
    d = tmp_path / "pki"
    d.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"),
             "-days", "1", "-subj", "/CN=vswitchd test CA")
    _cert(d, "server", "/CN=server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    client = "extendedKeyUsage=clientAuth"
    _cert(d, "admin", "/O=ops/CN=ctl-admin", client)
    _cert(d, "reader", "/CN=monitor",
          f"subjectAltName=DNS:monitor.example.org,URI:spiffe://example.org/mon\n{client}")
    _cert(d, "stranger", "/CN=stranger", f"subjectAltName=DNS:stranger.example.org\n{client}")
    return d


def test_client_certificates_carry_roles(host, tmp_path, role_pki):
    h = host
    d = role_pki
    cfg = tmp_path / "v.yaml"
    cfg.write_text("\n".join([
        "tcp:", f"  address: {ADDRESS}", f"  tls_cert: {d / 'server.pem'}",
        f"  tls_key: {d / 'server.key'}", f"  tls_client_ca: {d / 'ca.pem'}", "  roles:",
        "    admin: [CN=ctl-admin]", "    reader: ['URI:spiffe://example.org/mon']", ""]))
    h.start("--config", str(cfg))

    def call(name: str | None, bridge: str) -> list[str]:
        cert = (str(d / f"{name}.pem"), str(d / f"{name}.key")) if name else ()
        res = h.run_in(h.ns, str(BIN / "python"), str(HERE / "tlsclient.py"), ADDRESS,
                       str(d / "ca.pem"), *cert, "--create", bridge)
        return res.stdout.splitlines() or [res.stderr]

    assert call("admin", "br-a") == ["ok", "create ok"]
    out = call("reader", "br-r")
    assert out[0] == "ok"
    assert re.fullmatch(r"create refused PERMISSION_DENIED: CreateBridge needs the admin role; "
                        r"CN=monitor at ipv4:127\.0\.0\.1:\d+ on "
                        rf"tcp:{ADDRESS} has the reader role", out[1]), out[1]
    out = call("stranger", "br-s")
    assert out[0] == "refused PERMISSION_DENIED"
    assert out[1].startswith("create refused PERMISSION_DENIED: CreateBridge needs the admin "
                             "role;") and "has no role (its certificate matches no entry of " \
                             "tcp.roles)" in out[1]
    out = call(None, "br-n")  # no certificate: the handshake fails, no call is made
    assert out[0] == "refused UNAVAILABLE" and out[1].startswith("create refused UNAVAILABLE")
    assert [b["name"] for b in h.json("list-br")] == ["br-a"]

    lines = audit_lines(h.log())
    assert [re.sub(r" who=.*", "", line) for line in lines] == [
        'call=CreateBridge resource="bridge.name=br-a" result=OK role=admin',
        'call=CreateBridge resource="bridge.name=br-r" result='
        "PERMISSION_DENIED role=reader",
        "call=GetStatus resource=\"\" result=PERMISSION_DENIED role=none",
        'call=CreateBridge resource="bridge.name=br-s" result='
        "PERMISSION_DENIED role=none",
    ]
    assert re.search(r' who="CN=ctl-admin,O=ops at ipv4:127\.0\.0\.1:\d+" '
                     f"listener=tcp:{ADDRESS}$", lines[0]), lines[0]
    assert ' who="CN=stranger at ipv4:127.0.0.1:' in lines[3]
