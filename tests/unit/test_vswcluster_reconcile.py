from vswcluster import keys, reconcile
from vswcluster.reconcile import AddFdb, DelFdb, LocalState, SetRemotes, Tunnel

A, B, C = "10.77.0.1", "10.77.0.2", "10.77.0.3"
M1, M2, M3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def mirror_of(*entries):
    """entries: (host, vtep, vni, [(vlan, mac, ips)...]) -> the mirror those hosts publish."""
    out = {}
    rev = 1
    for host, vtep, vni, macs in entries:
        local = LocalState([Tunnel("br0", "vx0", vni, vtep)],
                           {vni: {(vlan, mac): tuple(ips) for vlan, mac, ips in macs}})
        for k, v in reconcile.publish(local, host, None).items():
            out[k] = (v, rev)
            rev += 1
    return out


def test_publish_keys_of_a_host():
    local = LocalState([Tunnel("br0", "vx0", 100, A)], {100: {(0, M1): ("10.5.0.1",)}})
    assert reconcile.publish(local, "h1", None) == {
        "/vswitchd/v1/hosts/h1": '{"vtep":"10.77.0.1"}',
        "/vswitchd/v1/vnis/100/vteps/h1": '{"vtep":"10.77.0.1"}',
        f"/vswitchd/v1/vnis/100/macs/h1/0/{M1}": '{"ips":["10.5.0.1"],"vtep":"10.77.0.1"}',
    }
    # --vtep overrides the port's local address; no address at all publishes nothing
    assert reconcile.publish(local, "h1", "192.0.2.1")["/vswitchd/v1/hosts/h1"] == \
        '{"vtep":"192.0.2.1"}'
    assert reconcile.publish(LocalState([Tunnel("br0", "vx0", 100, "")]), "h1", None) == {}


def test_publish_diff_writes_only_what_changed():
    want = {"/vswitchd/v1/hosts/h1": "x", "/vswitchd/v1/vnis/1/vteps/h1": "y"}
    mirror = {"/vswitchd/v1/hosts/h1": ("x", 3), "/vswitchd/v1/vnis/1/vteps/h1": ("old", 4),
              f"/vswitchd/v1/vnis/1/macs/h1/0/{M1}": ("z", 5),
              f"/vswitchd/v1/vnis/1/macs/h2/0/{M2}": ("z", 6)}
    puts, dels = reconcile.publish_diff(want, mirror, "h1")
    assert puts == {"/vswitchd/v1/vnis/1/vteps/h1": "y"}
    assert dels == [f"/vswitchd/v1/vnis/1/macs/h1/0/{M1}"]
    mirror["/vswitchd/v1/vnis/1/vteps/h1"] = ("y", 7)
    del mirror[f"/vswitchd/v1/vnis/1/macs/h1/0/{M1}"]
    assert reconcile.publish_diff(want, mirror, "h1") == ({}, [])


def test_program_adds_remotes_and_remote_macs_of_the_same_vni_only():
    view = keys.parse(mirror_of(("h1", A, 100, [(0, M1, ["10.5.0.1"])]),
                                ("h2", B, 100, [(0, M2, ["10.5.0.2"])]),
                                ("h3", C, 200, [(0, M3, [])])))
    local = LocalState([Tunnel("br0", "vx0", 100, A)], {100: {(0, M1): ("10.5.0.1",)}})
    assert reconcile.program(view, local, "h1", None) == [
        SetRemotes("br0", "vx0", (B,)),
        AddFdb("br0", "vx0", 0, M2, B),
    ]


def test_program_is_empty_when_in_sync_and_removes_what_left():
    view = keys.parse(mirror_of(("h1", A, 100, []), ("h2", B, 100, [(0, M2, [])])))
    synced = LocalState([Tunnel("br0", "vx0", 100, A, frozenset({B}), {(0, M2): B})])
    assert reconcile.program(view, synced, "h1", None) == []
    gone = keys.parse(mirror_of(("h1", A, 100, [])))
    assert reconcile.program(gone, synced, "h1", None) == [
        DelFdb("br0", "vx0", 0, M2),
        SetRemotes("br0", "vx0", ()),
    ]


def test_a_moved_mac_goes_to_the_newest_record_and_a_local_mac_stays_local():
    mirror = mirror_of(("h1", A, 100, []), ("h2", B, 100, [(0, M2, [])]),
                       ("h3", C, 100, [(0, M2, [])]))
    view = keys.parse(mirror)
    local = LocalState([Tunnel("br0", "vx0", 100, A, frozenset({B, C}), {(0, M2): B})])
    # h3's record of M2 is newer than h2's
    assert reconcile.program(view, local, "h1", None) == [
        DelFdb("br0", "vx0", 0, M2), AddFdb("br0", "vx0", 0, M2, C)]
    local_here = LocalState([Tunnel("br0", "vx0", 100, A, frozenset({B, C}), {(0, M2): B})],
                            {100: {(0, M2): ()}})
    assert reconcile.program(view, local_here, "h1", None) == [DelFdb("br0", "vx0", 0, M2)]


def test_own_vtep_is_never_a_remote():
    # another host name announcing our own address (a re-installed host) is not a remote
    view = keys.parse(mirror_of(("h1", A, 100, []), ("old-h1", A, 100, [(0, M2, [])])))
    local = LocalState([Tunnel("br0", "vx0", 100, A)])
    assert reconcile.program(view, local, "h1", None) == []
