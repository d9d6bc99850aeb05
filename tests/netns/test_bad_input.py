"""Every bad input gets a clear error from the daemon, and nothing half-done remains."""

from __future__ import annotations

from contextlib import contextmanager

import grpc
import pytest

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc

pytestmark = pytest.mark.root


@contextmanager
def api(host):
    """A gRPC stub on the daemon's socket (what vswctl would not send)."""
    with grpc.insecure_channel(f"unix:{host.socket}") as channel:
        yield pb_grpc.SwitchStub(channel)


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
    refused(h, "add-br", "a/b", says="'/'")
    refused(h, "add-br", "a b", says="' '")
    refused(h, "add-port", "br0", "a:b", says="':'")
    refused(h, "add-port", "br0", "p1", "--peer-name", "bad name", says="peer_name")
    # vswctl checks the length before sending (a usage error); the daemon refuses it too
    for args, says in ((("add-br", "x" * 16), "bridge name"), (("add-port", "br0", "p" * 16),
                                                               "port name")):
        res = h.vswctl(*args, check=False)
        assert res.returncode == 1 and res.stdout == "", res
        assert says in res.stderr and "is longer than 15 bytes" in res.stderr, res.stderr
    with api(h) as stub:
        for call, req, field in (
                (stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name="x" * 16)),
                 "bridge"),
                (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(bridge="br0", name="p" * 16)),
                 "port")):
            with pytest.raises(grpc.RpcError) as ei:
                call(req, timeout=30)
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert ei.value.details().startswith(f"{field} '") and \
                "is longer than 15 bytes" in ei.value.details()


LONG = "a" * 100_000


def test_oversized_values_get_short_messages(br0):
    """A 100 000-character value is refused by what it is (INVALID_ARGUMENT, NOT_FOUND) with a
    short message, not RESOURCE_EXHAUSTED because the message echoed it."""
    h = br0
    before = snapshot(h)
    with api(h) as stub:
        for call, req, code in (
                (stub.CreateBridge, pb.CreateBridgeRequest(bridge=pb.Bridge(name=LONG)),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (stub.DeleteBridge, pb.DeleteBridgeRequest(name=LONG), grpc.StatusCode.NOT_FOUND),
                (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(bridge="br0", name=LONG)),
                 grpc.StatusCode.INVALID_ARGUMENT),
                (stub.CreatePort, pb.CreatePortRequest(port=pb.Port(bridge=LONG, name="p1")),
                 grpc.StatusCode.INVALID_ARGUMENT)):
            with pytest.raises(grpc.RpcError) as ei:
                call(req, timeout=30)
            assert ei.value.code() == code, ei.value.details()[:300]
            assert "(100 000 characters)" in ei.value.details()
            assert len(ei.value.details()) < 200
    # through vswctl: a flow or a packet naming a 100 000-character port
    h.vswctl("add-br", "br1")
    for args in (("add-flow", "br1", f"in_port={LONG},actions=drop"),
                 ("trace", "br1", f"in_port={LONG}")):
        res = h.vswctl(*args, check=False)
        assert res.returncode == 2, res.stderr[:300]
        assert "INVALID_ARGUMENT" in res.stderr and "(100 000 characters)" in res.stderr
        assert len(res.stderr) < 300
    h.vswctl("del-br", "br1")
    assert snapshot(h) == before


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


def test_one_name_rule_for_every_interface_name(br0):
    """The kernel's rule for bridge, port and peer names alike; what the kernel would refuse
    is refused up front, naming the field."""
    h = br0
    for name in ("é", "😀"):
        h.vswctl("add-br", name, "--datapath", "kernel")
    h.vswctl("add-port", "é", "ü", "--type", "tap")
    h.vswctl("add-port", "é", "ö", "--netns", h.name("uni"), "--peer-name", "ä")
    assert {"é", "😀", "ü", "ö"} <= h.links()
    assert "ä" in h.links(h.name("uni"))
    refused(h, "add-br", "à", says="bridge 'à': must not contain 'à'")  # C3 A0: a kernel space
    refused(h, "add-port", "br0", "à", "--type", "tap", says="port 'à': must not contain")
    refused(h, "add-port", "br0", "p1", "--netns", h.name("uni"), "--peer-name", "eà",
            says="peer_name 'eà': must not contain")
    # a veth port's namespace is named after it unless given: a message about the port
    err = refused(h, "add-port", "br0", "ÿ", says="port 'ÿ': cannot name its network namespace")
    assert "--netns NAME" in err and "netns 'ÿ'" not in err
    for name in ("é", "😀"):
        h.vswctl("del-br", name)


def test_addresses_namespaces_and_outputs_that_cannot_work(br0, tmp_path):
    h = br0
    for ip, says in (("10.3.0.0/24", "is the network address of 10.3.0.0/24"),
                     ("10.3.0.255/24", "is the broadcast address of 10.3.0.0/24"),
                     ("224.0.0.1/24", "is a multicast address"),
                     ("ff02::1/64", "is a multicast address")):
        refused(h, "add-br", "br1", "--ip", ip, says=f"ip '{ip}': {says}")
    refused(h, "add-br", "br1", "--ip", "10.3.0.1/24", "--ip", "10.3.0.1/25",
            says="ip '10.3.0.1/25': is given twice (also as 10.3.0.1/24)")
    h.vswctl("add-br", "br1", "--ip", "10.3.0.1/24")  # eBPF: it takes flows
    ns = h.name("v1")
    refused(h, "add-port", "br1", "p1", "--netns", ns, "--ip", "10.3.0.1/24",
            says="ip '10.3.0.1/24': is already the address of bridge br1")
    refused(h, "add-port", "br0", "p1", "--netns", ns, "--ip", "10.3.0.9/24",
            says="ip '10.3.0.9/24': overlaps 10.3.0.1/24 of bridge br1")
    h.vswctl("add-port", "br1", "p1", "--netns", ns, "--ip", "10.3.0.2/24")
    refused(h, "add-port", "br1", "p2", "--netns", h.name("v2"), "--ip", "10.3.0.2/16",
            says="ip '10.3.0.2/16': is already the address of port p1 of bridge br1")
    # the daemon's own namespace, however the path names it
    link = tmp_path / "own-ns"
    link.symlink_to(f"/proc/{h.proc.pid}/ns/net")
    for ref in ("/proc/self/ns/net", f"/proc/{h.proc.pid}/ns/net", "//proc/./1/../self/ns/net",
                str(link)):
        refused(h, "add-port", "br1", "p2", "--netns", ref,
                says=f"netns '{ref}': is the network namespace vswitchd runs in")
    # a flow that outputs to one port twice
    h.vswctl("add-port", "br1", "t1", "--type", "tap")
    h.vswctl("add-port", "br1", "t2", "--type", "tap")
    res = h.vswctl("add-flow", "br1", "in_port=t1,actions=output:t2,normal,output:t2",
                   check=False)
    assert res.returncode == 2, res
    assert "INVALID_ARGUMENT: output:t2: the flow outputs to t2 twice" in res.stderr
    assert h.json("dump-flows", "br1") == []
    h.vswctl("del-br", "br1")
