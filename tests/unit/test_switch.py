"""Switch against in-memory kernel/datapath tables: bridges, ports, rollback, FDB, stats, reconcile.

No root and no kernel: Links, the named-netns functions and the datapath are fakes (fakes.py).
Persistence is checked by reading the state directory back with a fresh StateStore.
"""

from __future__ import annotations

import errno
import os
import pwd

import pytest
from fakes import FakeDatapath, PortCounters, PortKind, make_rig

from vswitchd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.netlink.links import LinkStats

MAC_A = "02:aa:00:00:00:01"
MAC_B = "02:bb:00:00:00:02"


@pytest.fixture
def rig(monkeypatch, tmp_path):
    return make_rig(monkeypatch, str(tmp_path / "state"))


@pytest.fixture
def nodp(monkeypatch, tmp_path):
    return make_rig(monkeypatch, str(tmp_path / "state"), ebpf=False,
                    reason="kernel 4.19 has no bpf_redirect_peer")


def snapshot(rig):
    """Everything a failed change must leave exactly as it was."""
    store = rig.switch.store.path
    return {
        "links": dict(rig.links.table),
        "netns": set(rig.netns.names),
        "dp_ports": dict(rig.dp.ports) if rig.dp else None,
        "dp_members": {k: set(v) for k, v in rig.dp.members.items()} if rig.dp else None,
        "store": store.read_bytes() if store.exists() else None,
    }


def fail_store(monkeypatch, rig):
    def save(_bridges, meta=None):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(rig.switch.store, "save", save)


# ---- bridges -----------------------------------------------------------------------------


def test_create_ebpf_bridge_creates_link_attaches_datapath_and_persists(rig):
    view = rig.switch.create_bridge(BridgeSpec("br0", "ebpf", ["10.0.0.1/24"]))
    info = rig.links.get("br0")
    assert info.kind == "bridge"
    assert rig.links.addresses["br0"] == ["10.0.0.1/24"]
    assert rig.dp.called("add_bridge") == [(info.ifindex, info.mac)]
    assert rig.dp.bridges == {info.ifindex: info.mac}
    assert (view.spec.name, view.spec.datapath, view.ifindex, view.mac, view.ports) == (
        "br0", "ebpf", info.ifindex, info.mac, [])
    assert rig.stored() == {"br0": {"name": "br0", "datapath": "ebpf",
                                    "addresses": ["10.0.0.1/24"], "ports": [], "fdb": [],
                                    "mac": info.mac}}  # its own MAC, kept in the store


def test_create_kernel_bridge_does_not_touch_datapath(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", "kernel", ["fd00::1/64"]))
    assert rig.links.get("kbr").kind == "bridge"
    assert rig.dp.calls == []
    assert rig.stored()["kbr"]["datapath"] == "kernel"
    assert rig.stored()["kbr"]["addresses"] == ["fd00::1/64"]


def test_unspecified_datapath_takes_the_configured_default(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path), default_datapath="kernel")
    view = r.switch.create_bridge(BridgeSpec("br0", ""))
    assert view.spec.datapath == "kernel"
    assert r.stored()["br0"]["datapath"] == "kernel"
    assert r.dp.calls == []


def test_bad_datapath_and_address_name_their_field(rig):
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_bridge(BridgeSpec("br0", "ovs"))
    assert ei.value.field == "datapath" and "ovs" in str(ei.value)
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_bridge(BridgeSpec("br0", "kernel", ["10.0.0.1"]))
    assert ei.value.field == "ip"
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_bridge(BridgeSpec("a/b", "kernel"))
    assert ei.value.field == "bridge"
    assert rig.links.called("create_bridge") == []
    assert rig.stored() == {}


def test_may_exist_returns_the_existing_bridge(rig):
    first = rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    with pytest.raises(AlreadyExists, match="bridge br0 already exists"):
        rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    again = rig.switch.create_bridge(BridgeSpec("br0", "ebpf"), may_exist=True)
    assert (again.ifindex, again.mac) == (first.ifindex, first.mac)
    assert len(rig.links.called("create_bridge")) == 1
    assert len(rig.dp.called("add_bridge")) == 1


def test_name_of_a_foreign_link_is_refused_even_with_may_exist(rig):
    rig.links.add_system("eth0")
    for may_exist in (False, True):
        with pytest.raises(AlreadyExists, match="eth0 already exists and is not a bridge"):
            rig.switch.create_bridge(BridgeSpec("eth0", "kernel"), may_exist=may_exist)
    assert rig.links.called("create_bridge") == []
    assert rig.links.get("eth0").kind == ""


def test_bridge_name_used_by_a_managed_port_is_refused(rig):
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))
    rig.switch.create_port("br0", PortSpec("p1", "tap"))
    with pytest.raises(AlreadyExists):
        rig.switch.create_bridge(BridgeSpec("p1", "kernel"))


def test_missing_bridge_is_not_found_everywhere(rig):
    sw = rig.switch
    for call in (lambda: sw.get_bridge("nope"), lambda: sw.delete_bridge("nope"),
                 lambda: sw.list_ports("nope"), lambda: sw.fdb_list("nope"),
                 lambda: sw.port_stats("nope"),
                 lambda: sw.create_port("nope", PortSpec("p1", "tap")),
                 lambda: sw.fdb_add("nope", MAC_A, "p1")):
        with pytest.raises(NotFound, match="bridge nope does not exist"):
            call()
    assert sw.delete_bridge("nope", if_exists=True) is False
    assert rig.links.called("create_tap") == []


def test_delete_bridge_removes_link_ports_datapath_and_store_entry(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    sw.create_bridge(BridgeSpec("br1", "kernel"))
    sw.create_port("br0", PortSpec("p1"))
    assert sw.delete_bridge("br0") is True
    assert rig.links.get("br0") is None and rig.links.get("p1") is None
    assert "p1" not in rig.netns.names
    assert br.ifindex not in rig.dp.bridges
    assert rig.dp.ports == {}
    assert list(rig.stored()) == ["br1"]
    assert [b.spec.name for b in sw.list_bridges()] == ["br1"]


def test_datapath_failure_rolls_back_the_new_bridge(rig):
    rig.dp.fail_once("add_bridge", Unavailable("bpf map full"))
    with pytest.raises(Unavailable, match="bpf map full"):
        rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    assert rig.links.get("br0") is None
    assert rig.links.called("delete") == [("br0",)]
    assert rig.switch.list_bridges() == []
    assert rig.stored() == {}


def test_store_failure_rolls_back_the_new_bridge(monkeypatch, rig):
    fail_store(monkeypatch, rig)
    with pytest.raises(FailedPrecondition, match="cannot write state store .*Read-only"):
        rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    assert rig.links.get("br0") is None
    assert rig.dp.bridges == {}
    assert rig.switch.list_bridges() == []


# ---- eBPF unavailable --------------------------------------------------------------------


def test_ebpf_unavailable_refuses_ebpf_bridges_with_the_reason(nodp):
    with pytest.raises(FailedPrecondition) as ei:
        nodp.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    msg = str(ei.value)
    assert "kernel 4.19 has no bpf_redirect_peer" in msg
    assert "--datapath kernel" in msg
    assert nodp.links.get("br0") is None
    assert nodp.stored() == {}


def test_ebpf_unavailable_kernel_bridges_still_work(nodp):
    sw = nodp.switch
    sw.create_bridge(BridgeSpec("kbr", "kernel"))
    port = sw.create_port("kbr", PortSpec("p1", "tap"))
    assert nodp.links.master_name("p1") == "kbr"
    assert port.state == "up"
    sw.fdb_add("kbr", MAC_A, "p1")
    assert [(v.mac, v.port, v.static) for v in sw.fdb_list("kbr")] == [(MAC_A, "p1", True)]
    assert sw.sweep_fdb() == 0
    assert sw.status().ebpf_supported is False
    assert sw.status().ebpf_unsupported_reason == "kernel 4.19 has no bpf_redirect_peer"


def test_ebpf_unavailable_stored_ebpf_bridge_refuses_ports_and_fdb(monkeypatch, tmp_path):
    state = str(tmp_path)
    r = make_rig(monkeypatch, state)
    r.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    r.dp, r.reason = None, "no BTF"
    sw = r.new_switch()
    for call in (lambda: sw.create_port("br0", PortSpec("p1", "tap")),
                 lambda: sw.fdb_list("br0"), lambda: sw.fdb_add("br0", MAC_A, "br0")):
        with pytest.raises(FailedPrecondition, match="no BTF.*--datapath kernel"):
            call()
    assert r.links.get("p1") is None


# ---- port validation ---------------------------------------------------------------------


@pytest.mark.parametrize("spec, field", [
    (PortSpec("t1", "tap", netns="c1"), "netns"),
    (PortSpec("t1", "tap", addresses=["10.0.0.2/24"]), "ip"),
    (PortSpec("t1", "tap", mac=MAC_A), "mac"),
    (PortSpec("t1", "tap", peer_name="eth1"), "peer_name"),
    (PortSpec("s1", "system", netns="c1"), "netns"),
    (PortSpec("v1", "veth", owner="root"), "owner"),
    (PortSpec("s1", "system", owner="root"), "owner"),
    (PortSpec("s1", "system", mtu=1400), "mtu"),
    (PortSpec("v1", "veth", netns="bad name!"), "netns"),
    (PortSpec("v1", "veth", netns="../etc"), "netns"),
    (PortSpec("v1", "veth", mac="01:00:5e:00:00:01"), "mac"),
    (PortSpec("v1", "veth", addresses=["10.0.0.2"]), "ip"),
    (PortSpec("v1", "veth", peer_name="x" * 16), "peer_name"),
    (PortSpec("v1", "veth", mtu=20), "mtu"),
    (PortSpec("v1", "gre"), "type"),
    (PortSpec("", "tap"), "port"),
], ids=lambda v: v if isinstance(v, str) else f"{v.type}-{v.name}")
def test_port_validation_names_the_field(rig, spec, field):
    rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    before = snapshot(rig)
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_port("br0", spec)
    assert ei.value.field == field
    assert str(ei.value).startswith(f"{field} ")
    assert snapshot(rig) == before
    assert rig.netns.calls == []


def test_tap_owner_must_be_a_known_user(monkeypatch, rig):
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))

    def getpwnam(name):
        if name == "qemu":
            return pwd.struct_passwd(("qemu", "x", 107, 107, "", "/", "/bin/false"))
        raise KeyError(name)

    monkeypatch.setattr(pwd, "getpwnam", getpwnam)
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_port("br0", PortSpec("t1", "tap", owner="nosuchuser"))
    assert ei.value.field == "owner" and "no such user" in str(ei.value)
    assert rig.links.get("t1") is None
    rig.switch.create_port("br0", PortSpec("t1", "tap", owner="qemu", mtu=9000))
    assert rig.links.called("create_tap") == [("t1", "qemu", 9000)]
    assert rig.stored()["br0"]["ports"][0]["owner"] == "qemu"


def test_one_name_rule_for_bridges_ports_and_peers(rig):
    """The kernel's rule for every interface name; a veth port whose name cannot name its
    default namespace is told so, about the port."""
    sw = rig.switch
    for name in ("é", "😀", "brü0"):
        assert sw.create_bridge(BridgeSpec(name, "kernel")).spec.name == name
    sw.create_port("é", PortSpec("ü", "tap"))
    sw.create_port("é", PortSpec("ö", "veth", netns="ns1", peer_name="ä"))
    assert rig.links.veth_peer["ö"] == ("ns1", "ä")
    before = snapshot(rig)
    for bad, field in ((lambda: sw.create_bridge(BridgeSpec("à", "kernel")), "bridge"),
                       (lambda: sw.create_port("é", PortSpec("à", "tap")), "port"),
                       (lambda: sw.create_port("é", PortSpec("p1", netns="ns1", peer_name="à")),
                        "peer_name")):
        with pytest.raises(InvalidArgument) as ei:
            bad()
        assert ei.value.field == field and "must not contain 'à'" in str(ei.value)
    with pytest.raises(InvalidArgument) as ei:
        sw.create_port("é", PortSpec("ÿ"))  # a veth named ÿ lives in a namespace named ÿ
    assert ei.value.field == "port"
    assert str(ei.value).startswith("port 'ÿ': cannot name its network namespace")
    assert "--netns NAME" in str(ei.value)
    assert snapshot(rig) == before


def test_port_on_a_bad_bridge_name_is_invalid(rig):
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_port("b r", PortSpec("p1"))
    assert ei.value.field == "bridge"


# ---- creating ports ----------------------------------------------------------------------


def test_veth_port_creates_namespace_veth_and_datapath_entry(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    view = sw.create_port("br0", PortSpec("p1", addresses=["10.0.0.2/24"], mac="02:AA:00:00:00:01"))
    info = rig.links.get("p1")
    assert rig.netns.names == {"p1"}  # default namespace: named after the port
    assert rig.links.veth_peer["p1"] == ("p1", "eth0")
    assert rig.links.master_name("p1") == "br0"
    assert rig.dp.called("add_port") == [(br.ifindex, info.ifindex, PortKind.PEER)]
    assert rig.dp.members[br.ifindex] == {info.ifindex}
    assert (view.bridge, view.ifindex, view.state) == ("br0", info.ifindex, "up")
    assert view.facts.netns_created is True
    stored = rig.stored()["br0"]["ports"]
    assert stored == [{"name": "p1", "type": "veth", "netns": "p1", "peer_name": "eth0",
                       "addresses": ["10.0.0.2/24"], "mac": "02:aa:00:00:00:01", "mtu": 0,
                       "owner": "", "netns_created": True}]


def test_veth_into_an_existing_namespace_does_not_own_it(rig):
    rig.netns.names.add("c1")
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))
    view = rig.switch.create_port("br0", PortSpec("p1", netns="c1", peer_name="eth1"))
    assert view.facts.netns_created is False
    assert rig.netns.called("create_named") == []
    assert rig.links.veth_peer["p1"] == ("c1", "eth1")
    assert rig.switch.delete_port("br0", "p1") is True
    assert rig.netns.names == {"c1"}
    assert rig.netns.called("remove_named") == []
    assert rig.links.get("p1") is None


def test_veth_into_the_daemons_own_namespace_is_refused(rig, tmp_path):
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))
    link = tmp_path / "ns-link"
    link.symlink_to("/proc/self/ns/net")
    own = ["/proc/self/ns/net", f"/proc/{os.getpid()}/ns/net", "//proc/./1/../self/ns/net",
           "/proc/self/task/../ns/net", "/proc/thread-self/ns/net", str(link)]
    rig.netns.paths.update(own)  # they exist
    before = snapshot(rig)
    for ref in own:
        with pytest.raises(InvalidArgument) as ei:
            rig.switch.create_port("br0", PortSpec("p1", netns=ref))
        assert ei.value.field == "netns" and ei.value.value == ref
        assert "is the network namespace vswitchd runs in" in str(ei.value)
    assert snapshot(rig) == before


def test_addresses_are_unique_on_a_bridge_and_subnets_between_bridges(rig):
    sw = rig.switch
    with pytest.raises(InvalidArgument, match=r"ip '10.0.0.1/16': is given twice \(also as "
                                              r"10.0.0.1/24\)"):
        sw.create_bridge(BridgeSpec("br0", "kernel", ["10.0.0.1/24", "10.0.0.1/16"]))
    sw.create_bridge(BridgeSpec("br0", "kernel", ["10.0.0.1/24", "fd00::1/64"]))
    sw.create_bridge(BridgeSpec("br1", "kernel", ["10.1.0.1/24"]))
    sw.create_port("br0", PortSpec("p1", netns="ns1", addresses=["10.0.0.2/24"]))
    before = snapshot(rig)
    for spec, message in (
            (PortSpec("p2", netns="ns2", addresses=["10.0.0.1/24"]),
             "ip '10.0.0.1/24': is already the address of bridge br0"),
            (PortSpec("p2", netns="ns2", addresses=["fd00::1/128"]),
             "ip 'fd00::1/128': is already the address of bridge br0"),
            (PortSpec("p2", netns="ns2", addresses=["10.0.0.2/24"]),
             "ip '10.0.0.2/24': is already the address of port p1 of bridge br0"),
            (PortSpec("p2", netns="ns2", addresses=["10.0.0.3/24", "10.0.0.3/25"]),
             "ip '10.0.0.3/25': is given twice (also as 10.0.0.3/24)"),
            (PortSpec("p2", netns="ns2", addresses=["10.1.0.7/24"]),
             "ip '10.1.0.7/24': overlaps 10.1.0.1/24 of bridge br1"),
            (PortSpec("p2", netns="ns2", addresses=["10.0.0.9/24", "10.1.0.0/16"]),
             "ip '10.1.0.0/16': is the network address of 10.1.0.0/16"),
            (PortSpec("p2", netns="ns2", addresses=["10.1.2.3/16"]),
             "ip '10.1.2.3/16': overlaps 10.1.0.1/24 of bridge br1"),
            (PortSpec("p2", netns="ns2", addresses=["10.0.0.255/24"]),
             "ip '10.0.0.255/24': is the broadcast address of 10.0.0.0/24"),
            (PortSpec("p2", netns="ns2", addresses=["224.0.0.9/24"]),
             "ip '224.0.0.9/24': is a multicast address")):
        with pytest.raises(InvalidArgument) as ei:
            sw.create_port("br0", spec)
        assert str(ei.value).startswith(message), str(ei.value)
    assert snapshot(rig) == before
    sw.create_port("br0", PortSpec("p2", netns="ns2", addresses=["10.0.0.3/24", "fd00::3/64"]))
    sw.create_port("br1", PortSpec("p3", netns="ns3", addresses=["10.1.0.2/24"]))


def test_veth_into_a_missing_namespace_path_is_refused(rig):
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_port("br0", PortSpec("p1", netns="/proc/4242/ns/net"))
    assert ei.value.field == "netns" and "does not exist" in str(ei.value)
    rig.netns.paths.add("/proc/4242/ns/net")
    view = rig.switch.create_port("br0", PortSpec("p1", netns="/proc/4242/ns/net"))
    assert view.facts.netns_created is False
    assert rig.netns.names == set()


def test_tap_and_system_ports_are_device_kind(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    eth1 = rig.links.add_system("eth1")
    sw.create_port("br0", PortSpec("t1", "tap"))
    sw.create_port("br0", PortSpec("eth1", "system"))
    t1 = rig.links.get("t1")
    assert t1.kind == "tun"
    assert rig.dp.ports == {t1.ifindex: (br.ifindex, PortKind.DEVICE),
                            eth1.ifindex: (br.ifindex, PortKind.DEVICE)}
    assert rig.links.master_name("eth1") == "br0"
    assert [p.spec.name for p in sw.list_ports("br0")] == ["eth1", "t1"]
    assert [p["type"] for p in rig.stored()["br0"]["ports"]] == ["tap", "system"]


def test_existing_names_are_refused(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "kernel"))
    sw.create_bridge(BridgeSpec("br1", "kernel"))
    rig.links.add_system("eth1")
    with pytest.raises(AlreadyExists, match="eth1 already exists and is not managed"):
        sw.create_port("br0", PortSpec("eth1", "tap"))
    with pytest.raises(AlreadyExists, match="br1 is a bridge managed by vswitchd"):
        sw.create_port("br0", PortSpec("br1", "system"))
    first = sw.create_port("br0", PortSpec("t1", "tap"))
    with pytest.raises(AlreadyExists, match="t1 already exists on bridge br0 .*--may-exist"):
        sw.create_port("br0", PortSpec("t1", "tap"))
    with pytest.raises(AlreadyExists, match="port t1 already exists on bridge br0$"):
        sw.create_port("br1", PortSpec("t1", "tap"), may_exist=True)
    again = sw.create_port("br0", PortSpec("t1", "tap"), may_exist=True)
    assert again.ifindex == first.ifindex
    assert len(rig.links.called("create_tap")) == 1


def test_system_port_checks(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "kernel"))
    rig.links.add_system("other", kind="bridge")
    rig.links.add_system("eth2", master="other")
    with pytest.raises(NotFound, match="eth9 does not exist"):
        sw.create_port("br0", PortSpec("eth9", "system"))
    with pytest.raises(InvalidArgument) as ei:
        sw.create_port("br0", PortSpec("lo", "system"))
    assert ei.value.field == "port" and "loopback" in str(ei.value)
    with pytest.raises(InvalidArgument, match="is a bridge"):
        sw.create_port("br0", PortSpec("other", "system"))
    with pytest.raises(FailedPrecondition, match="eth2 is already enslaved to other"):
        sw.create_port("br0", PortSpec("eth2", "system"))
    assert rig.links.called("enslave") == []
    assert rig.stored()["br0"]["ports"] == []


# ---- rollback ----------------------------------------------------------------------------


VETH_STEPS = [
    ("netns", "create_named", Unavailable("cannot create network namespace p1")),
    ("links", "create_veth", AlreadyExists("interface eth0 already exists in p1")),
    ("links", "enslave", FailedPrecondition("interface br0 is not a bridge")),
    ("dp", "add_port", Unavailable("ports map full")),
    ("store", "save", None),
]


@pytest.mark.parametrize("where, method, exc", VETH_STEPS, ids=[s[1] for s in VETH_STEPS])
def test_veth_rollback_at_each_step_leaves_nothing(monkeypatch, rig, where, method, exc):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf"))
    sw.create_port("br0", PortSpec("keep", "tap"))
    before = snapshot(rig)
    if where == "store":
        fail_store(monkeypatch, rig)
        expected, match = FailedPrecondition, "cannot write state store"
    else:
        getattr(rig, where).fail_once(method, exc)
        expected, match = type(exc), str(exc)
    with pytest.raises(expected, match=match):
        sw.create_port("br0", PortSpec("p1", addresses=["10.0.0.2/24"]))
    after = snapshot(rig)
    assert after == before
    assert rig.links.get("p1") is None
    assert "p1" not in rig.netns.names
    assert [p.spec.name for p in sw.list_ports("br0")] == ["keep"]
    with pytest.raises(NotFound):
        sw.get_port("br0", "p1")
    assert [p["name"] for p in rig.stored()["br0"]["ports"]] == ["keep"]
    # and the switch is usable again afterwards
    monkeypatch.undo()
    rig.netns.install(monkeypatch)
    view = sw.create_port("br0", PortSpec("p1"))
    assert view.state == "up" and view.facts.netns_created is True


@pytest.mark.parametrize("method", ["create_tap", "enslave", "add_port", "save"])
def test_tap_rollback_at_each_step_leaves_nothing(monkeypatch, rig, method):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf"))
    before = snapshot(rig)
    if method == "save":
        fail_store(monkeypatch, rig)
    elif method == "add_port":
        rig.dp.fail_once(method, Unavailable("boom"))
    else:
        rig.links.fail_once(method, Unavailable("boom"))
    with pytest.raises((Unavailable, FailedPrecondition)):
        sw.create_port("br0", PortSpec("t1", "tap"))
    assert snapshot(rig) == before
    assert sw.list_ports("br0") == []


@pytest.mark.parametrize("method", ["enslave", "add_port", "save"])
def test_system_port_rollback_releases_but_keeps_the_interface(monkeypatch, rig, method):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf"))
    eth1 = rig.links.add_system("eth1")
    before = snapshot(rig)
    if method == "save":
        fail_store(monkeypatch, rig)
    elif method == "add_port":
        rig.dp.fail_once(method, Unavailable("boom"))
    else:
        rig.links.fail_once(method, Unavailable("boom"))
    with pytest.raises((Unavailable, FailedPrecondition)):
        sw.create_port("br0", PortSpec("eth1", "system"))
    assert rig.links.get("eth1") == eth1  # still there, master None again
    assert rig.links.called("delete") == []
    assert snapshot(rig) == before


# ---- deleting ports ----------------------------------------------------------------------


def test_delete_veth_port_removes_the_namespace_it_created(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    p1 = sw.create_port("br0", PortSpec("p1", netns="c1"))
    sw.fdb_add("br0", MAC_A, "p1")
    assert rig.netns.names == {"c1"}
    assert sw.delete_port("br0", "p1") is True
    assert rig.links.get("p1") is None
    assert rig.netns.names == set()
    assert rig.netns.called("remove_named") == [("c1",)]
    assert rig.dp.called("remove_port") == [(br.ifindex, p1.ifindex)]
    assert rig.dp.ports == {}
    assert rig.stored()["br0"]["ports"] == [] and rig.stored()["br0"]["fdb"] == []
    with pytest.raises(NotFound, match="--if-exists"):
        sw.delete_port("br0", "p1")
    assert sw.delete_port("br0", "p1", if_exists=True) is False


def test_delete_system_port_releases_and_does_not_delete(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    eth1 = rig.links.add_system("eth1")
    sw.create_port("br0", PortSpec("eth1", "system"))
    assert rig.links.get("eth1").master == br.ifindex
    assert sw.delete_port("br0", "eth1") is True
    assert rig.links.get("eth1") == eth1
    assert rig.links.called("release") == [("eth1",)]
    assert rig.links.called("delete") == []
    assert rig.dp.ports == {}


def test_delete_port_keeps_a_namespace_another_port_still_uses(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "kernel"))
    sw.create_port("br0", PortSpec("p1", netns="c1"))               # creates c1
    sw.create_port("br0", PortSpec("p2", netns="c1", peer_name="eth1"))  # shares it
    sw.delete_port("br0", "p1")
    assert "c1" in rig.netns.names
    assert [(p.spec.name, p.state) for p in sw.list_ports("br0")] == [("p2", "up")]


def test_delete_port_store_failure_is_a_switch_error(monkeypatch, rig):
    rig.switch.create_bridge(BridgeSpec("br0", "kernel"))
    rig.switch.create_port("br0", PortSpec("t1", "tap"))
    fail_store(monkeypatch, rig)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        rig.switch.delete_port("br0", "t1")


# ---- FDB ---------------------------------------------------------------------------------


def test_ebpf_fdb_add_list_delete(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    p1 = sw.create_port("br0", PortSpec("p1", "tap"))
    p2 = sw.create_port("br0", PortSpec("p2", "tap"))
    view = sw.fdb_add("br0", "02-AA-00-00-00-01", "p1", vlan=10)
    assert (view.mac, view.port, view.vlan, view.static, view.age_seconds) == (
        MAC_A, "p1", 10, True, 0.0)
    assert rig.dp.called("fdb_add_static") == [(br.ifindex, MAC_A, 10, p1.ifindex)]
    rig.dp.learn(br.ifindex, MAC_B, p2.ifindex, age=12.345)
    rig.dp.learn(br.ifindex, "02:cc:00:00:00:03", 999, age=1.0)  # unknown ifindex
    rig.dp.learn(br.ifindex, "02:dd:00:00:00:04", br.ifindex, age=0.04)
    got = [(v.mac, v.port, v.vlan, v.static, v.age_seconds) for v in sw.fdb_list("br0")]
    assert got == [
        ("02:dd:00:00:00:04", "br0", 0, False, 0.0),
        ("02:cc:00:00:00:03", "ifindex:999", 0, False, 1.0),
        (MAC_B, "p2", 0, False, 12.3),
        (MAC_A, "p1", 10, True, 0.0),
    ]
    assert rig.stored()["br0"]["fdb"] == [{"mac": MAC_A, "port": "p1", "vlan": 10}]
    # re-adding the same mac/vlan moves it instead of duplicating
    sw.fdb_add("br0", MAC_A, "p2", vlan=10)
    assert rig.stored()["br0"]["fdb"] == [{"mac": MAC_A, "port": "p2", "vlan": 10}]
    assert rig.dp.fdb[br.ifindex][(MAC_A, 10)].ifindex == p2.ifindex
    assert sw.fdb_delete("br0", MAC_A.upper(), 10) is True
    assert rig.dp.called("fdb_delete")[-1] == (br.ifindex, MAC_A, 10)
    assert rig.stored()["br0"]["fdb"] == []
    with pytest.raises(NotFound, match="no FDB entry for 02:aa:00:00:00:01 vlan 10"):
        sw.fdb_delete("br0", MAC_A, 10)
    assert sw.fdb_delete("br0", MAC_A, 10, if_exists=True) is False
    # a learned entry can be deleted too (store untouched)
    assert sw.fdb_delete("br0", MAC_B) is True
    assert (MAC_B, 0) not in rig.dp.fdb[br.ifindex]


def test_kernel_fdb_add_list_delete(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("kbr", "kernel"))
    t1 = sw.create_port("kbr", PortSpec("t1", "tap"))
    sw.create_port("kbr", PortSpec("t2", "tap"))
    sw.fdb_add("kbr", MAC_A, "t1")
    assert rig.links.called("fdb_add_static") == [("kbr", "t1", MAC_A, 0)]
    rig.links.learn("kbr", MAC_B, "t2", age=7.06)
    got = [(v.mac, v.port, v.static, v.age_seconds) for v in sw.fdb_list("kbr")]
    assert got == [(MAC_A, "t1", True, 0.0), (MAC_B, "t2", False, 7.1)]
    assert rig.links.kernel_fdb["kbr"][(MAC_A, 0)].ifindex == t1.ifindex
    assert rig.stored()["kbr"]["fdb"] == [{"mac": MAC_A, "port": "t1", "vlan": 0}]
    assert sw.fdb_delete("kbr", MAC_A) is True
    assert rig.links.called("fdb_delete") == [("kbr", MAC_A, 0)]
    assert rig.stored()["kbr"]["fdb"] == []
    assert [v.mac for v in sw.fdb_list("kbr")] == [MAC_B]
    assert rig.dp.calls == []


def test_fdb_add_checks(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf"))
    with pytest.raises(NotFound, match="port p9 does not exist on bridge br0"):
        sw.fdb_add("br0", MAC_A, "p9")
    with pytest.raises(InvalidArgument) as ei:
        sw.fdb_add("br0", "01:00:5e:00:00:01", "br0")
    assert ei.value.field == "mac"
    with pytest.raises(InvalidArgument) as ei:
        sw.fdb_add("br0", MAC_A, "br0", vlan=4095)
    assert ei.value.field == "vlan"
    assert rig.dp.called("fdb_add_static") == []
    assert rig.stored()["br0"]["fdb"] == []


def test_fdb_add_store_failure_uninstalls_the_entry(monkeypatch, rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    sw.create_port("br0", PortSpec("t1", "tap"))
    fail_store(monkeypatch, rig)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        sw.fdb_add("br0", MAC_A, "t1")
    assert rig.switch.snapshot()["br0"].fdb == []
    assert rig.dp.fdb.get(br.ifindex, {}) == {}


def test_fdb_sweep_passes_the_configured_aging(rig):
    br = rig.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    rig.dp.learn(br.ifindex, MAC_A, br.ifindex, age=301)
    rig.dp.learn(br.ifindex, MAC_B, br.ifindex, age=299)
    assert rig.switch.sweep_fdb() == 1
    assert rig.dp.called("fdb_sweep") == [(300,)]
    assert list(rig.dp.fdb[br.ifindex]) == [(MAC_B, 0)]


# ---- stats -------------------------------------------------------------------------------


def test_port_stats_ebpf_and_kernel(rig):
    sw = rig.switch
    br = sw.create_bridge(BridgeSpec("br0", "ebpf"))
    t1 = sw.create_port("br0", PortSpec("t1", "tap"))
    rig.dp.counters[t1.ifindex] = PortCounters(5, 500, 6, 600, {"no-fdb-port": 2, "vlan": 1})
    rig.dp.counters[br.ifindex] = PortCounters(1, 64, 0, 0, {})
    stats = sw.port_stats("br0")
    assert [(s.port, s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes, s.drops)
            for s in stats] == [("br0", 1, 64, 0, 0, 0), ("t1", 5, 500, 6, 600, 3)]
    assert stats[1].drops_by_reason == {"no-fdb-port": 2, "vlan": 1}
    assert [s.port for s in sw.port_stats("br0", "t1")] == ["t1"]
    with pytest.raises(NotFound, match="port t9 does not exist on bridge br0"):
        sw.port_stats("br0", "t9")

    sw.create_bridge(BridgeSpec("kbr", "kernel"))
    sw.create_port("kbr", PortSpec("t2", "tap"))
    rig.links.counters["t2"] = LinkStats(7, 700, 8, 800, 0, 4)
    (s,) = sw.port_stats("kbr", "t2")
    assert (s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes) == (7, 700, 8, 800)
    assert s.drops_by_reason == {"tx-dropped": 4} and s.drops == 4
    rig.links._drop("t2")  # a port whose interface vanished is skipped
    assert [x.port for x in sw.port_stats("kbr")] == ["kbr"]


# ---- the bridge's own MAC ----------------------------------------------------------------


def _own_mac(mac: str) -> bool:
    """A locally administered unicast MAC, not all zeros."""
    first = int(mac[:2], 16)
    return first & 0x03 == 0x02 and mac != "00:00:00:00:00:00"


@pytest.mark.parametrize("datapath", ["ebpf", "kernel"])
def test_a_bridge_keeps_its_own_mac_when_ports_come_and_go(rig, datapath):
    sw = rig.switch
    view = sw.create_bridge(BridgeSpec("br0", datapath, ["10.0.0.1/24"]))
    mac = view.mac
    assert _own_mac(mac) and rig.stored()["br0"]["mac"] == mac
    assert sw.create_bridge(BridgeSpec("br1", datapath)).mac != mac  # random: one each
    for name, peer_mac in (("p1", "02:00:00:00:00:01"), ("p2", "02:00:00:00:00:02")):
        sw.create_port("br0", PortSpec(name, netns=name, mac=peer_mac))
    sw.create_port("br0", PortSpec("t1", "tap"))
    assert rig.links.get("br0").mac == mac
    for name in ("t1", "p1", "p2"):
        sw.delete_port("br0", name)
        assert rig.links.get("br0").mac == mac  # never a port's, never zeros
    if datapath == "ebpf":
        assert rig.dp.bridges[view.ifindex] == mac  # the host's port answers to it
    assert rig.stored()["br0"]["mac"] == mac


def test_a_bridge_gets_its_own_mac_back_after_a_restart(rig):
    sw = rig.switch
    view = sw.create_bridge(BridgeSpec("br0", "ebpf", ["10.0.0.1/24"]))
    mac = view.mac
    sw.create_port("br0", PortSpec("t1", "tap"))
    rig.new_switch().reconcile()
    assert rig.links.get("br0").mac == mac and rig.links.called("set_mac")[-1] == ("br0", mac)
    # changed behind the daemon's back: set back at the next start, the datapath too
    rig.links.set_mac("br0", "02:99:00:00:00:99")
    rig.new_switch().reconcile()
    assert rig.links.get("br0").mac == mac and rig.dp.bridges[view.ifindex] == mac
    assert rig.dp.called("fdb_delete")[-1] == (view.ifindex, "02:99:00:00:00:99", 0)
    # ... or while it runs (netlink events)
    sw = rig.new_switch()
    sw.reconcile()
    rig.links.set_mac("br0", "02:99:00:00:00:98")
    sw.links_changed()
    assert rig.links.get("br0").mac == mac
    # gone (a reboot): re-created with the same MAC
    rig.links._drop("br0")
    rig.dp.bridges.clear()
    rig.new_switch().reconcile()
    info = rig.links.get("br0")
    assert info.mac == mac and rig.dp.bridges[info.ifindex] == mac
    assert rig.links.master_name("t1") == "br0"


def _forget_bridge_macs(rig) -> None:
    """The store as written before bridges had a MAC of their own."""
    import json
    import sqlite3

    rig.switch.store.close()
    db = sqlite3.connect(rig.switch.store.path)
    for name, spec in db.execute("SELECT name, spec FROM bridges").fetchall():
        row = json.loads(spec)
        row.pop("mac")
        db.execute("UPDATE bridges SET spec=? WHERE name=?", (json.dumps(row), name))
    db.commit()
    db.close()


def test_a_store_without_bridge_macs_adopts_the_devices(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf"))
    sw.create_bridge(BridgeSpec("gone", "kernel"))
    _forget_bridge_macs(rig)
    rig.links.set_mac("br0", "02:42:00:00:00:42")  # what the device wears
    rig.links._drop("gone")
    assert "mac" not in rig.stored()["br0"]
    rig.new_switch().reconcile()
    stored = rig.stored()
    assert stored["br0"]["mac"] == "02:42:00:00:00:42" == rig.links.get("br0").mac
    assert ("br0", "02:42:00:00:00:42") in rig.links.called("set_mac")  # now kept
    assert _own_mac(stored["gone"]["mac"]) and rig.links.get("gone").mac == stored["gone"]["mac"]


def test_an_uplink_lends_the_nics_mac_and_gives_the_bridges_own_back(rig):
    sw = rig.switch
    nic = rig.links.add_system("eth9")
    mac = sw.create_bridge(BridgeSpec("br0", "ebpf")).mac
    sw.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    assert rig.links.get("br0").mac == nic.mac
    sw = rig.new_switch()
    sw.reconcile()  # the NIC's MAC stays: not swapped for the own one and back
    assert rig.links.get("br0").mac == nic.mac
    assert ("br0", mac) not in rig.links.called("set_mac")[-3:]
    sw.delete_port("br0", "eth9")
    assert rig.links.get("br0").mac == mac == rig.stored()["br0"]["mac"]


def test_an_uplink_of_a_store_without_bridge_macs_gives_back_the_one_it_remembers(rig):
    sw = rig.switch
    nic = rig.links.add_system("eth9")
    mac = sw.create_bridge(BridgeSpec("br0", "ebpf")).mac
    sw.create_port("br0", PortSpec("eth9", type="system", uplink=True))
    _forget_bridge_macs(rig)
    sw = rig.new_switch()
    sw.reconcile()
    assert rig.links.get("br0").mac == nic.mac and rig.stored()["br0"]["mac"] == mac
    sw.delete_port("br0", "eth9")
    assert rig.links.get("br0").mac == mac


# ---- reconcile ---------------------------------------------------------------------------


def _populated(rig):
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0", "ebpf", ["10.0.0.1/24"]))
    rig.links.add_system("eth1")
    sw.create_port("br0", PortSpec("v1", netns="c1", addresses=["10.0.0.2/24"]))
    rig.netns.names.add("ext")
    sw.create_port("br0", PortSpec("v2", netns="ext"))
    sw.create_port("br0", PortSpec("t1", "tap", mtu=9000))
    sw.create_port("br0", PortSpec("eth1", "system"))
    sw.fdb_add("br0", MAC_A, "t1")
    return sw


def test_reconcile_recreates_everything_after_a_reboot(rig):
    _populated(rig)
    stored = rig.stored()
    # reboot: the kernel forgets every link and namespace, the datapath maps are empty
    for name in ("br0", "v1", "v2", "t1"):
        rig.links._drop(name)
    rig.netns.names.clear()
    rig.netns.names.add("ext")  # a namespace vswitchd did not create (re-made by its owner)
    rig.dp = FakeDatapath()
    sw = rig.new_switch()
    eth1_before = rig.links.get("eth1")
    sw.reconcile()

    br = rig.links.get("br0")
    assert br.kind == "bridge" and rig.links.addresses["br0"] == ["10.0.0.1/24"]
    assert rig.netns.names == {"c1", "ext"}
    assert rig.links.veth_peer["v1"] == ("c1", "eth0")
    assert rig.links.addresses["v1"] == ["10.0.0.2/24"]
    assert rig.links.get("t1").mtu == 9000
    for port in ("v1", "v2", "t1", "eth1"):
        assert rig.links.master_name(port) == "br0", port
    assert rig.links.get("eth1").ifindex == eth1_before.ifindex
    assert rig.dp.bridges == {br.ifindex: br.mac}
    kinds = {rig.links.get_by_index(i).name: k for i, (b, k) in rig.dp.ports.items()}
    assert kinds == {"v1": PortKind.PEER, "v2": PortKind.PEER, "t1": PortKind.DEVICE,
                     "eth1": PortKind.DEVICE}
    assert rig.dp.fdb[br.ifindex][(MAC_A, 0)].ifindex == rig.links.get("t1").ifindex
    kept = {br.ifindex, *(rig.links.get(p).ifindex for p in ("v1", "v2", "t1", "eth1"))}
    assert rig.dp.called("prune") == [(kept,)]
    assert all(p.state == "up" for p in sw.list_ports("br0"))
    assert rig.stored() == stored


def test_reconcile_marks_what_it_cannot_restore_as_missing(rig):
    _populated(rig)
    rig.links._drop("eth1")              # a NIC that went away
    rig.netns.remove_named("ext")        # someone else's namespace: gone, v2 with it
    stale_t1 = rig.links.get("t1").ifindex
    rig.links._drop("t1")                # a TAP that vanished: re-created
    sw = rig.new_switch()
    sw.reconcile()
    states = {p.spec.name: (p.state, p.ifindex) for p in sw.list_ports("br0")}
    assert states["eth1"] == ("missing: system interface eth1 is not present", 0)
    assert states["v2"] == ("missing: network namespace ext is gone", 0)
    assert states["v1"][0] == "up" and states["t1"][0] == "up"
    assert rig.links.get("t1").ifindex != stale_t1
    assert "ext" not in rig.netns.names  # not re-created: vswitchd does not own it
    keep = rig.dp.called("prune")[-1][0]
    assert keep == {rig.links.get(n).ifindex for n in ("br0", "v1", "t1")}
    assert stale_t1 not in rig.dp.ports
    # the missing ports stay in the desired state
    assert [p["name"] for p in rig.stored()["br0"]["ports"]] == ["v1", "v2", "t1", "eth1"]


def test_reconcile_readopts_existing_links_without_recreating(rig):
    _populated(rig)
    rig.links.release("t1")
    calls_before = len(rig.links.calls)
    rig.new_switch().reconcile()
    new_calls = [c[0] for c in rig.links.calls[calls_before:]]
    assert "create_bridge" not in new_calls and "create_tap" not in new_calls
    assert "create_veth" not in new_calls
    assert ("set_addresses", "br0", ["10.0.0.1/24"]) in rig.links.calls
    assert rig.links.called("enslave")[-1] == ("t1", "br0")
    assert rig.links.master_name("t1") == "br0"


def test_reconcile_without_ebpf_keeps_kernel_bridges_and_marks_ebpf_ones(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path))
    r.switch.create_bridge(BridgeSpec("br0", "ebpf"))
    r.switch.create_bridge(BridgeSpec("kbr", "kernel"))
    r.switch.create_port("kbr", PortSpec("t1", "tap"))
    r.links._drop("kbr")
    r.links._drop("t1")
    r.dp, r.reason = None, "no BTF"
    sw = r.new_switch()
    sw.reconcile()
    assert r.links.master_name("t1") == "kbr"
    assert "no BTF" in sw.ctx.missing["br0"]
    assert sorted(r.stored()) == ["br0", "kbr"]


def test_reconcile_replaces_a_bridge_name_taken_by_a_non_bridge(rig):
    rig.switch.create_bridge(BridgeSpec("kbr", "kernel"))
    rig.links._drop("kbr")
    rig.links.add_system("kbr", kind="dummy")
    sw = rig.new_switch()
    sw.reconcile()  # does not raise
    assert "kbr exists but is a dummy" in sw.ctx.missing["kbr"]
    assert rig.links.get("kbr").kind == "dummy"


def test_state_survives_a_restart(rig):
    _populated(rig)
    a = rig.switch.get_bridge("br0")
    b = rig.new_switch().get_bridge("br0")
    assert b.spec == a.spec
    assert [(p.spec, p.ifindex, p.state) for p in b.ports] == [
        (p.spec, p.ifindex, p.state) for p in a.ports]
    assert [p.spec.name for p in b.ports] == ["eth1", "t1", "v1", "v2"]


def test_listings_of_many_ports_read_one_link_snapshot(rig):
    """Past SNAPSHOT_PORTS ports a listing reads the links from one dump (Links.snapshot);
    a few ports are asked for one by one (cheaper than a dump of every link)."""
    from vswitchd.switch import SNAPSHOT_PORTS

    sw = rig.switch
    sw.create_bridge(BridgeSpec("small"))
    sw.create_port("small", PortSpec("s1", netns="s1"))
    sw.create_bridge(BridgeSpec("big"))
    for i in range(SNAPSHOT_PORTS + 1):
        sw.create_port("big", PortSpec(f"b{i}", netns=f"b{i}"))
    before = rig.links.snapshots
    sw.get_bridge("small")
    sw.list_ports("small")
    sw.port_stats("small")
    assert rig.links.snapshots == before
    for read in (lambda: sw.get_bridge("big"), lambda: sw.list_ports("big"),
                 lambda: sw.port_stats("big"), lambda: sw.fdb_list("big"), sw.list_bridges):
        read()
    assert rig.links.snapshots == before + 5
    sw.port_stats("big", "b1")  # one port: no dump
    assert rig.links.snapshots == before + 5


def test_a_listing_of_a_small_share_of_the_ports_asks_for_its_links(rig):
    """A bridge's listing reads the links one by one when its ports are a small share of all
    the ports (a dump would parse every link of the host: a bridge of 125 among 4 000 ports
    took 100 ms a listing); a pass over every port still reads one dump."""
    from vswitchd.switch import SNAPSHOT_PORTS, SNAPSHOT_SHARE

    sw = rig.switch
    n = SNAPSHOT_PORTS + 1
    for b in range(SNAPSHOT_SHARE + 1):
        sw.create_bridge(BridgeSpec(f"b{b}"))
        for i in range(n):
            sw.create_port(f"b{b}", PortSpec(f"p{b}x{i}", netns=f"p{b}x{i}"))
    before = rig.links.snapshots
    sw.list_ports("b0")
    sw.port_stats("b0")
    assert rig.links.snapshots == before
    sw.list_bridges()
    assert rig.links.snapshots == before + 1
