"""Tunnel ports in the Switch against the fakes (fakes.py): validation, one VNI per host, MTU,
remote VTEPs, remote FDB entries, rollback, restore. The eBPF datapath's part is in
tests/datapath, real traffic in tests/netns/test_tunnels.py."""

from __future__ import annotations

import pytest
from fakes import make_rig

from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.ports import validate as validate_port

LOCAL = "10.77.0.1"


@pytest.fixture(params=["ebpf", "kernel"])
def rig(request, monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"))
    r.links.host_ips.add(LOCAL)
    r.datapath = request.param
    return r


def vx(name: str = "vx0", vni: int = 100, **kw) -> PortSpec:
    return PortSpec(name, type="vxlan", vni=vni, local=kw.pop("local", LOCAL), **kw)


def bridge(rig, name: str = "br0") -> None:
    rig.switch.create_bridge(BridgeSpec(name, rig.datapath))


@pytest.mark.parametrize("spec, field, says", [
    (PortSpec("vx0", type="vxlan"), "vni", "1..16777215"),
    (PortSpec("vx0", type="vxlan", vni=1 << 24), "vni", "1..16777215"),
    (PortSpec("vx0", type="vxlan", vni=5, local="10.0.0.300"), "local", "not an IP address"),
    (PortSpec("vx0", type="vxlan", vni=5, local="224.0.0.1"), "local", "unicast"),
    (PortSpec("vx0", type="vxlan", vni=5, dstport=70000), "dstport", "1..65535"),
    (PortSpec("vx0", type="vxlan", vni=5, local=LOCAL, remotes=[LOCAL]), "remotes",
     "own local address"),
    (PortSpec("vx0", type="vxlan", vni=5, local=LOCAL, remotes=["fd00::2"]), "remotes",
     "IPv6"),
    (PortSpec("vx0", type="vxlan", vni=5, xdp="native"), "xdp", "no XDP"),
    (PortSpec("c0", vni=5), "vni", "applies only to vxlan ports"),
])
def test_bad_specs_name_the_field(spec, field, says):
    with pytest.raises(InvalidArgument) as exc:
        validate_port(spec)
    assert exc.value.field == field and says in str(exc.value)


def test_spec_is_canonical():
    spec = validate_port(PortSpec("vx0", type="vxlan", vni=7, local=LOCAL,
                                  remotes=["10.77.0.3", "10.77.0.2", "10.77.0.3"]))
    assert (spec.dstport, spec.remotes) == (4789, ["10.77.0.2", "10.77.0.3"])


def test_tunnel_port_made_with_its_vni_mtu_and_vteps(rig):
    bridge(rig)
    view = rig.switch.create_port("br0", vx(remotes=["10.77.0.2"]))
    assert view.spec.mtu == 1450 and view.spec.remotes == ["10.77.0.2"]
    info = rig.links.vxlan_info("vx0")
    assert info.external == (rig.datapath == "ebpf")
    assert rig.links.vxlan_vnis("vx0") == [100]
    if rig.datapath == "kernel":  # the device's FDB holds the VTEPs
        assert rig.links.vxlan_remotes("vx0") == ["10.77.0.2"]
    else:
        assert rig.dp.vteps(rig.links.get("vx0").ifindex) == ["10.77.0.2"]
    # later veth/tap ports get the tunnel's MTU; a larger one is refused, naming the limit
    assert rig.switch.create_port("br0", PortSpec("c1", netns="c1")).spec.mtu == 1450
    with pytest.raises(InvalidArgument, match="at most 1450"):
        rig.switch.create_port("br0", PortSpec("c2", netns="c2", mtu=1500))
    assert "c2" not in rig.links.table


def test_one_bridge_per_vni_and_one_tunnel_per_bridge(rig):
    bridge(rig)
    bridge(rig, "br1")
    rig.switch.create_port("br0", vx())
    with pytest.raises(AlreadyExists, match="VNI 100 is already used by port vx0 of bridge br0"):
        rig.switch.create_port("br1", vx("vx1"))
    with pytest.raises(FailedPrecondition, match="already has a tunnel port"):
        rig.switch.create_port("br0", vx("vx2", 200))
    assert "vx1" not in rig.links.table and "vx2" not in rig.links.table


def test_local_and_remotes_checked_against_the_host(rig):
    bridge(rig)
    with pytest.raises(InvalidArgument, match="not an address of this host"):
        rig.switch.create_port("br0", vx(local="10.77.0.9"))
    rig.links.host_ips.add("10.77.0.5")
    with pytest.raises(InvalidArgument, match="this host itself"):
        rig.switch.create_port("br0", vx(remotes=["10.77.0.5"]))
    assert "vx0" not in rig.links.table and rig.switch.list_ports("br0") == []


def test_tunnel_refused_where_ports_have_a_larger_mtu(rig):
    bridge(rig)
    rig.switch.create_port("br0", PortSpec("c1", netns="c1"))
    with pytest.raises(FailedPrecondition, match=r"c1 \(1500\).*add the tunnel port before"):
        rig.switch.create_port("br0", vx())
    assert "vx0" not in rig.links.table


def test_vteps_added_deleted_listed_and_replaced(rig):
    bridge(rig)
    rig.switch.create_port("br0", vx())
    assert rig.switch.vtep_add("br0", "vx0", "10.77.0.3") == ("br0", "vx0", "10.77.0.3", 100)
    rig.switch.vtep_add("br0", "vx0", "10.77.0.2")
    with pytest.raises(AlreadyExists, match="--may-exist"):
        rig.switch.vtep_add("br0", "vx0", "10.77.0.2")
    rig.switch.vtep_add("br0", "vx0", "10.77.0.2", may_exist=True)
    assert [v[2] for v in rig.switch.vtep_list("br0")] == ["10.77.0.2", "10.77.0.3"]
    assert rig.switch.vtep_delete("br0", "vx0", "10.77.0.3")
    with pytest.raises(NotFound, match="--if-exists"):
        rig.switch.vtep_delete("br0", "vx0", "10.77.0.3")
    assert not rig.switch.vtep_delete("br0", "vx0", "10.77.0.3", if_exists=True)
    with pytest.raises(InvalidArgument, match="address"):
        rig.switch.vtep_add("br0", "vx0", LOCAL)
    rig.switch.update_port("br0", "vx0", {"remotes": ["10.77.0.8", "10.77.0.7"]})
    assert rig.switch.get_port("br0", "vx0").spec.remotes == ["10.77.0.7", "10.77.0.8"]
    rig.switch.create_port("br0", PortSpec("c1", netns="c1"))
    with pytest.raises(FailedPrecondition, match="not a tunnel port"):
        rig.switch.vtep_add("br0", "c1", "10.77.0.2")
    # kept in the store: a new Switch on the same state directory has them
    again = rig.new_switch()
    again.reconcile()
    assert [v[2] for v in again.vtep_list()] == ["10.77.0.7", "10.77.0.8"]


def test_remote_fdb_entries(rig):
    bridge(rig)
    rig.switch.create_port("br0", vx())
    rig.switch.create_port("br0", PortSpec("c1", netns="c1"))
    mac = "02:00:00:00:00:07"
    with pytest.raises(InvalidArgument, match="tunnel port"):
        rig.switch.fdb_add("br0", mac, "vx0")
    with pytest.raises(InvalidArgument, match="applies only to tunnel ports"):
        rig.switch.fdb_add("br0", mac, "c1", remote="10.77.0.2")
    view = rig.switch.fdb_add("br0", mac, "vx0", remote="10.77.0.2")
    assert view.remote == "10.77.0.2"
    entry = next(e for e in rig.switch.fdb_list("br0") if e.mac == mac)
    assert (entry.port, entry.remote, entry.static) == ("vx0", "10.77.0.2", True)
    assert rig.switch.fdb_delete("br0", mac)
    assert mac not in {e.mac for e in rig.switch.fdb_list("br0")}


def test_a_store_without_the_remote_column_gains_it(tmp_path):
    """A state store written before remote FDB entries existed reads, and keeps them after."""
    import sqlite3

    from vswitchd.model import Bridge, StaticFdb
    from vswitchd.state import StateStore

    store = StateStore(str(tmp_path))
    store.load()
    db = sqlite3.connect(store.path)
    db.execute("DROP TABLE fdb")
    db.execute("CREATE TABLE fdb (bridge TEXT NOT NULL, mac TEXT NOT NULL, vlan INTEGER NOT "
               "NULL, port TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (bridge, mac, vlan))")
    db.execute("INSERT INTO bridges VALUES ('br0', '{\"datapath\": \"ebpf\", \"addresses\": []}',"
               " 1)")
    db.execute("INSERT INTO fdb VALUES ('br0', '02:00:00:00:00:01', 0, 'c1', 0)")
    db.commit()
    db.close()
    old = StateStore(str(tmp_path)).load()
    assert old["br0"].fdb == [StaticFdb("02:00:00:00:00:01", "c1", 0, "")]
    again = StateStore(str(tmp_path))
    bridges: dict[str, Bridge] = again.load()
    bridges["br0"].fdb.append(StaticFdb("02:00:00:00:00:02", "vx0", 0, "10.77.0.2"))
    again.save(bridges)
    assert StateStore(str(tmp_path)).load()["br0"].fdb[1].remote == "10.77.0.2"
