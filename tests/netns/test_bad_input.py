"""Every bad input gets a clear error from the daemon, and nothing half-done remains."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.root


def snapshot(host):
    return (host.links(), host.namespaces(), host.json("list-br"),
            host.json("list-ports", "br0"))


def refused(host, *args, code="INVALID_ARGUMENT", says=""):
    before = snapshot(host)
    res = host.vswctl(*args, check=False)
    assert res.returncode == 2, (args, res.returncode, res.stdout, res.stderr)
    assert res.stdout == ""
    assert code in res.stderr and says in res.stderr, res.stderr
    assert snapshot(host) == before, f"{args} left something behind"
    return res.stderr


@pytest.fixture
def br0(host):
    host.start()
    host.vswctl("add-br", "br0", "--datapath", "kernel")
    return host


def test_bad_names(br0):
    h = br0
    refused(h, "add-br", "x" * 16, says="longer than 15 bytes")
    refused(h, "add-br", "a/b", says="'/'")
    refused(h, "add-br", "a b", says="' '")
    refused(h, "add-port", "br0", "a:b", says="':'")
    refused(h, "add-port", "br0", "p" * 16, says="port")
    refused(h, "add-port", "br0", "p1", "--peer-name", "bad name", says="peer_name")


def test_existing_objects(br0):
    h = br0
    refused(h, "add-br", "br0", code="ALREADY_EXISTS", says="bridge br0 already exists")
    assert h.vswctl("add-br", "br0", "--may-exist").returncode == 0
    h.vswctl("add-port", "br0", "p1", "--netns", h.name("p1"))
    refused(h, "add-port", "br0", "p1", "--netns", h.name("p1"), code="ALREADY_EXISTS",
            says="port p1 already exists on bridge br0")
    assert h.vswctl("add-port", "br0", "p1", "--may-exist").returncode == 0
    refused(h, "add-port", "nobr", "p2", code="NOT_FOUND", says="bridge nobr does not exist")
    refused(h, "del-port", "br0", "nope", code="NOT_FOUND", says="port nope")
    assert h.vswctl("del-port", "br0", "nope", "--if-exists").returncode == 0
    refused(h, "del-br", "nobr", code="NOT_FOUND", says="bridge nobr")
    assert h.vswctl("del-br", "nobr", "--if-exists").returncode == 0


def test_interface_not_owned_by_vswitchd(br0):
    h = br0
    h.run_in(h.ns, "ip", "link", "add", "dum0", "type", "veth", "peer", "name", "dum0p")
    refused(h, "add-port", "br0", "dum0", code="ALREADY_EXISTS", says="not managed by vswitchd")
    refused(h, "add-br", "dum0", code="ALREADY_EXISTS", says="dum0")
    refused(h, "add-port", "br0", "nosuch0", "--type", "system", code="NOT_FOUND",
            says="nosuch0 does not exist")
    assert "dum0" in h.links()


def test_bad_values(br0):
    h = br0
    refused(h, "add-br", "br1", "--ip", "10.1.0.1", says="prefix length")
    refused(h, "add-port", "br0", "p1", "--ip", "10.1.0.300/24", says="ip")
    refused(h, "add-port", "br0", "p1", "--mac", "01:00:5e:00:00:01", says="multicast")
    refused(h, "add-port", "br0", "p1", "--mtu", "20", says="mtu")
    refused(h, "add-port", "br0", "p1", "--netns", "/proc/999999999/ns/net",
            says="/proc/999999999/ns/net")
    refused(h, "add-port", "br0", "t1", "--type", "tap", "--owner", "no-such-user-x",
            says="no such user")
    # vswctl itself rejects what is not even a number or a MAC: usage errors, exit 1.
    for flag, value in (("--mtu", "abc"), ("--mac", "02:00:00:00:00")):
        res = h.vswctl("add-port", "br0", "p1", flag, value, check=False)
        assert res.returncode == 1 and flag in res.stderr and res.stdout == ""


def test_failure_after_partial_work_is_rolled_back(br0):
    h = br0
    # The kernel refuses an IPv6 address on an MTU below 1280: this fails after the namespace
    # and the veth pair were made, so both must be undone.
    refused(h, "add-port", "br0", "p1", "--netns", h.name("p1"), "--mtu", "1000",
            "--ip", "fd00:77::5/64")
    assert h.name("p1") not in h.namespaces()
    # A peer name already taken inside an existing namespace: the namespace stays (not ours).
    ns = h.name("own")
    h.run_in(h.ns, "ip", "netns", "add", ns)
    h.run_in(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p")
    refused(h, "add-port", "br0", "p2", "--netns", ns, code="ALREADY_EXISTS", says=ns)
    assert ns in h.namespaces()
    assert "p2" not in h.links()
