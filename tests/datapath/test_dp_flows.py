"""Flow tables in the real datapath program (BPF_PROG_TEST_RUN dry and real runs)."""

from __future__ import annotations

import ctypes
import ipaddress
import struct

import pytest
from dp_helpers import BROADCAST, MAC_A, MAC_B, MAC_C, mac_bytes

from vswitchd.datapath import (
    DROP_REASONS,
    FLOW_FIELDS,
    MAX_FLOW_MASKS,
    Datapath,
    DpRule,
)
from vswitchd.datapath.flows import mask_needs
from vswitchd.errors import FailedPrecondition, InvalidArgument

pytestmark = pytest.mark.root

TC_ACT_SHOT, TC_ACT_REDIRECT = 2, 7


def mac_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def ip_int(addr: str) -> int:
    ip = ipaddress.ip_address(addr)
    return int(ip) << 96 if ip.version == 4 else int(ip)


def rule(rule_id, priority, actions, **fields):
    """fields: name=value or name=(value, mask)."""
    out = []
    for name, v in fields.items():
        value, mask = v if isinstance(v, tuple) else (v, (1 << FLOW_FIELDS[name]) - 1)
        out.append((name, value, mask))
    return DpRule(rule_id, priority, tuple(sorted(out)), tuple(actions))


def frame(dst=MAC_B, src=MAC_A, *, vlan=None, l3="ipv4", proto=17, sip="10.0.0.1",
          dip="10.0.0.2", sport=1000, dport=80, truncate=0):
    eth = mac_bytes(dst) + mac_bytes(src)
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    if l3 == "arp":
        return eth + struct.pack("!H", 0x0806) + bytes(28)
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, 0x02, 0, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, 8, 0)
    else:  # ICMP / ICMPv6 echo
        l4 = struct.pack("!BBHI", 8 if proto == 1 else 128, 0, 0, 0)
    if l3 == "ipv4":
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0, 64, proto, 0,
                         ipaddress.ip_address(sip).packed, ipaddress.ip_address(dip).packed)
        body = struct.pack("!H", 0x0800) + ip + l4
    else:
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64,
                         ipaddress.ip_address(sip).packed, ipaddress.ip_address(dip).packed)
        body = struct.pack("!H", 0x86DD) + ip + l4
    data = eth + body
    return data[:len(data) - truncate] if truncate else data


V6A, V6B = "2001:db8::1", "2001:db8::2"


def test_new_drop_reason_in_the_one_table():
    assert "flow-drop" in DROP_REASONS.values()


def test_table_miss_is_normal(dp, bridge):
    p0, p1, p2 = bridge.ports
    res = dp.run(frame(), p0)
    assert (res.verdict, res.rule_id) == ("flood", 0)
    dp.flows_sync(bridge.br, [rule(1, 100, [("drop", 0)], tp_dst=443)])
    res = dp.run(frame(), p0)
    assert (res.verdict, res.rule_id, res.outputs) == ("flood", 0, [])
    assert sorted(res.flood) == sorted([bridge.br, p1, p2])


@pytest.mark.parametrize("case", [
    # (match fields, frame kwargs that match, frame kwargs that do not)
    ({"in_port": "P0"}, {}, {"_port": 1}),
    ({"dl_src": mac_int(MAC_A)}, {}, {"src": MAC_C}),
    ({"dl_dst": mac_int(MAC_B)}, {}, {"dst": MAC_C}),
    ({"dl_src": (mac_int("02:00:00:00:00:00"), 0xFFFFFFFFFF00)}, {},
     {"src": "04:00:00:00:00:0a"}),
    ({"dl_type": 0x0806}, {"l3": "arp"}, {}),
    ({"dl_type": 0x86DD}, {"l3": "ipv6", "sip": V6A, "dip": V6B}, {}),
    ({"dl_type": 0x0800, "dl_vlan": 10}, {"vlan": 10}, {"vlan": 11}),
    ({"dl_type": 0x0800, "dl_vlan": 0}, {}, {"vlan": 5}),
    ({"nw_proto": 6}, {"proto": 6}, {"proto": 17}),
    ({"nw_proto": 1}, {"proto": 1}, {"proto": 6}),
    ({"nw_proto": 58}, {"l3": "ipv6", "proto": 58, "sip": V6A, "dip": V6B}, {"proto": 1}),
    ({"ip_src": (ip_int("10.0.0.0"), ip_int("255.255.255.0"))}, {}, {"sip": "10.0.1.1"}),
    ({"ip_dst": ip_int("10.0.0.2")}, {}, {"dip": "10.0.0.3"}),
    ({"ip_dst": (ip_int(V6B), ((1 << 64) - 1) << 64)},
     {"l3": "ipv6", "sip": V6A, "dip": "2001:db8::99"},
     {"l3": "ipv6", "sip": V6A, "dip": "2001:db9::2"}),
    ({"ip_src": ip_int(V6A)}, {"l3": "ipv6", "sip": V6A, "dip": V6B},
     {"l3": "ipv6", "sip": V6B, "dip": V6B}),
    ({"tp_src": 1000}, {}, {"sport": 1001}),
    ({"tp_dst": 80}, {"proto": 6}, {"proto": 6, "dport": 81}),
    ({"tp_dst": (0x1F00, 0xFF00)}, {"dport": 0x1F99}, {"dport": 0x2099}),
    ({"nw_proto": 17, "tp_dst": 53}, {"l3": "ipv6", "sip": V6A, "dip": V6B, "dport": 53},
     {"l3": "ipv6", "sip": V6A, "dip": V6B, "dport": 54}),
], ids=lambda c: ",".join(c[0]))
def test_match_fields(dp, bridge, case):
    match, hit, miss = case
    p0, p1, _ = bridge.ports
    fields = {k: (p0 if v == "P0" else v) for k, v in match.items()}
    dp.flows_sync(bridge.br, [rule(7, 100, [("drop", 0)], **fields)])

    def run(kw):
        kw = dict(kw)
        port = bridge.ports[kw.pop("_port", 0)]
        return dp.run(frame(**kw), port)

    res = run(hit)
    assert (res.rule_id, res.verdict, res.drop_reason) == (7, "drop", "flow-drop")
    assert res.retval == TC_ACT_SHOT
    res = run(miss)
    assert res.rule_id == 0 and res.verdict == "flood"


def test_ports_zero_for_icmp_and_truncated_is_malformed(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], nw_proto=1, tp_src=0, tp_dst=0)])
    assert dp.run(frame(proto=1), p0).rule_id == 1
    for kw in ({"proto": 6, "truncate": 1}, {"proto": 17, "truncate": 3},
               {"l3": "ipv6", "sip": V6A, "dip": V6B, "truncate": 4}):
        res = dp.run(frame(**kw), p0)
        assert (res.verdict, res.drop_reason) == ("drop", "malformed"), kw
    # L2-only frames (zero payload behind an IP EtherType) still switch
    assert dp.run(mac_bytes(MAC_B) + mac_bytes(MAC_A) + b"\x08\x00" + bytes(46), p0).verdict \
        == "flood"


def test_actions_output_normal_flood(dp, bridge):
    p0, p1, p2 = bridge.ports
    dp.run(frame(dst=BROADCAST, src=MAC_B), p1, dry_run=False)  # learn B on p1
    cases = [
        ([("output", p2)], "forward", p2, [p2], []),
        ([("output", p1), ("output", p2)], "forward", p2, [p1, p2], []),
        ([("output", p2), ("normal", 0)], "forward", p1, [p2], []),
        ([("normal", 0), ("output", p2)], "forward", p1, [p2], []),  # output moved first
        ([("flood", 0)], "flood", 0, [], [bridge.br, p1, p2]),
        ([("mod_vlan_vid", 5)], "drop", 0, [], []),
        ([("output", p0)], "drop", 0, [], []),  # never back out of in_port
    ]
    for i, (actions, verdict, out, outputs, flood) in enumerate(cases, 1):
        dp.flows_sync(bridge.br, [rule(i, 10, actions, in_port=p0)])
        res = dp.run(frame(), p0)
        assert (res.rule_id, res.verdict, res.outputs) == (i, verdict, outputs), actions
        if verdict == "drop":
            assert res.drop_reason == "flow-drop"
        if verdict == "forward":
            assert res.out_ifindex == out
        assert sorted(res.flood) == sorted(flood)
        real = dp.run(frame(), p0, dry_run=False)
        assert real.retval == (TC_ACT_SHOT if verdict == "drop" else TC_ACT_REDIRECT), actions


def test_flow_drop_counted_on_port_and_rule_counters(dp, bridge):
    p0, p1, _ = bridge.ports
    dp.flows_sync(bridge.br, [rule(11, 10, [("drop", 0)], tp_dst=80),
                              rule(12, 10, [("normal", 0)], tp_dst=81)])
    f80, f81 = frame(dport=80), frame(dport=81)
    for _ in range(3):
        dp.run(f80, p0)  # dry runs count nothing
    assert dp.flow_counters(bridge.br) == {}
    dp.run(f80, p0, dry_run=False)
    dp.run(f80, p1, dry_run=False)
    dp.run(f81, p0, dry_run=False)
    dp.run(frame(dport=82), p0, dry_run=False)  # miss: no rule counter
    c = dp.flow_counters(bridge.br)
    assert set(c) == {11, 12}
    assert (c[11].packets, c[11].bytes) == (2, 2 * len(f80))
    assert (c[12].packets, c[12].bytes) == (1, len(f81))
    assert c[11].last_hit_ns > 0
    assert dp.port_counters(p0).drops == {"flow-drop": 1}
    assert dp.flow_counters(bridge.br, [12, 99]) == {12: c[12]}  # by id (a removal's event)
    # a replaced rule gets a new id: its counters restart; unchanged ids keep theirs
    dp.flows_sync(bridge.br, [rule(13, 10, [("drop", 0)], tp_dst=80),
                              rule(12, 10, [("normal", 0)], tp_dst=81)])
    c = dp.flow_counters(bridge.br)
    assert set(c) == {12} and c[12].packets == 1


def test_vlan_actions_rewrite_frame(dp, bridge):
    p0, p1, _ = bridge.ports
    untagged, tagged = frame(), frame(vlan=0x2007)  # PCP 1, VID 7
    dp.flows_sync(bridge.br, [rule(1, 10, [("mod_vlan_vid", 42), ("output", p1)], dl_vlan=0)])
    out = dp.run(untagged, p0, dry_run=False)
    assert out.retval == TC_ACT_REDIRECT
    assert out.data == untagged[:12] + struct.pack("!HH", 0x8100, 42) + untagged[12:]
    dp.flows_sync(bridge.br, [rule(2, 10, [("mod_vlan_vid", 42), ("output", p1)], dl_vlan=7)])
    out = dp.run(tagged, p0, dry_run=False)
    assert out.data == tagged[:14] + struct.pack("!H", 0x2000 | 42) + tagged[16:]
    dp.flows_sync(bridge.br, [rule(3, 10, [("strip_vlan", 0), ("output", p1)], dl_vlan=7)])
    out = dp.run(tagged, p0, dry_run=False)
    assert out.data == untagged
    assert dp.run(tagged, p0).outputs == [p1]


def test_priorities_across_masks(dp, bridge):
    p0, p1, p2 = bridge.ports
    rules = [
        rule(1, 100, [("output", p1)], tp_dst=80),
        rule(2, 200, [("output", p2)], ip_dst=ip_int("10.0.0.2")),
        rule(3, 50, [("drop", 0)], dl_type=0x0800),
        rule(4, 300, [("drop", 0)], tp_dst=9999),  # the highest mask, not matching
    ]
    dp.flows_sync(bridge.br, rules)
    res = dp.run(frame(), p0)
    assert (res.rule_id, res.priority, res.outputs) == (2, 200, [p2])
    res = dp.run(frame(dip="10.0.0.9"), p0)
    assert (res.rule_id, res.priority) == (1, 100)
    res = dp.run(frame(dip="10.0.0.9", dport=81), p0)
    assert (res.rule_id, res.verdict) == (3, "drop")
    # a higher rule in a mask whose best priority comes later must still win
    rules.append(rule(5, 250, [("flood", 0)], tp_dst=80, nw_proto=17))
    dp.flows_sync(bridge.br, rules)
    assert dp.run(frame(), p0).rule_id == 5


def test_same_match_lower_priority_takes_over(dp, bridge):
    p0, p1, p2 = bridge.ports
    hi = rule(1, 200, [("output", p1)], tp_dst=80)
    lo = rule(2, 100, [("output", p2)], tp_dst=80)
    dp.flows_sync(bridge.br, [hi, lo])
    assert dp.run(frame(), p0).rule_id == 1
    dp.flows_sync(bridge.br, [lo])
    res = dp.run(frame(), p0)
    assert (res.rule_id, res.outputs) == (2, [p2])
    dp.flows_sync(bridge.br, [lo, hi])
    assert dp.run(frame(), p0).rule_id == 1


def _entries(dp, bridge, version):
    return sorted(bytes(k)[8:] + bytes(v) for k, v in dp._flows.rules.items()
                  if k.bridge == bridge and k.version == version)


def test_flip_keeps_both_versions_equal(dp, bridge):
    p1 = bridge.ports[1]
    a = [rule(i, 10 + i, [("output", p1)], tp_dst=1000 + i) for i in range(1, 6)]
    b = [rule(i, 10 + i, [("output", p1)], tp_dst=1000 + i) for i in range(4, 9)] + [
        rule(20, 5, [("drop", 0)], ip_src=(ip_int("10.0.0.0"), ip_int("255.0.0.0")))]
    for rules in (a, b, a, []):
        dp.flows_sync(bridge.br, rules)
        v0, v1 = _entries(dp, bridge.br, 0), _entries(dp, bridge.br, 1)
        assert v0 == v1
        assert len(v0) == len(rules)
    assert dp.run(frame(dport=1004), bridge.ports[0]).rule_id == 0


def _masks(dp, bridge):
    """The masks packets use (the version they name aside)."""
    for k, v in dp._flows.masks.items():
        if k.value == bridge:
            return sorted((bytes(v.m[i].mask), bytes(v.m[i].need_mask), bytes(v.m[i].need),
                           v.m[i].max_prio) for i in range(v.n))
    return []


def test_syncs_write_only_changes_and_equal_a_rebuild(dp, bridge, monkeypatch):
    """Each sync validates and packs only rule objects it has not seen; the maps it leaves
    are those a rebuild from scratch writes (rules, masks, both versions)."""
    p1, p2 = bridge.ports[1], bridge.ports[2]
    written = []
    real_write = dp._flows._write_batch
    monkeypatch.setattr(dp._flows, "_write_batch",
                        lambda blobs: (written.append(len(blobs)), real_write(blobs)))
    base = [rule(i, 10 + i % 3, [("output", p1)], tp_dst=1000 + i) for i in range(1, 40)]
    base += [rule(100 + i, 7, [("drop", 0)],
                  ip_src=(ip_int(f"10.{i}.0.0"), ip_int("255.255.0.0"))) for i in range(20)]
    same = [DpRule(r.rule_id, r.priority, r.fields, r.actions) for r in base]  # equal, new
    shadow = rule(200, 5, [("drop", 0)], tp_dst=1001)       # same key as rule 1, lower priority
    steps = [
        (base, 2 * len(base)),
        (same, 0),                                          # nothing differs: nothing written
        (base[5:] + [shadow], 2),                           # deletes; 200 takes over from 1
        (base[:1] + base[5:] + [shadow], 2),                # rule 1 is back over 200
        (base[10:] + [shadow, rule(201, 9, [("output", p2)], tp_src=7)], 2 * 2),
        ([], 0),
    ]
    for rules, writes in steps:
        written.clear()
        dp.flows_sync(bridge.br, rules)
        assert sum(written) == writes
        got = ([_entries(dp, bridge.br, v) for v in (0, 1)], _masks(dp, bridge.br))
        assert got[0][0] == got[0][1]
        state = dp._flows._bridges[bridge.br]
        assert state.needs == mask_needs(p.fields for p in state.installed.values())
        dp._flows._bridges.clear()                           # forget: the next sync rebuilds
        dp.flows_sync(bridge.br, rules)
        assert ([_entries(dp, bridge.br, v) for v in (0, 1)], _masks(dp, bridge.br)) == got


def test_the_rule_map_is_scanned_once_for_every_bridge(dp, bridge, topo, monkeypatch):
    """Only a bridge's first sync needs the map's stale keys; one scan (bcc walks the map key
    by key) serves all bridges, and forgetting a synced bridge deletes the keys it knows."""
    from dp_helpers import Bridge

    other = Bridge(topo, dp, "o", 1)
    scans = []
    real_keys = dp._flows.rules.keys
    monkeypatch.setattr(dp._flows.rules, "keys", lambda: (scans.append(1), real_keys())[1])
    dp.flows_sync(bridge.br, [rule(i, 10, [("drop", 0)], tp_dst=i) for i in range(1, 30)])
    dp.flows_sync(other.br, [rule(i, 10, [("drop", 0)], tp_src=i) for i in range(40, 50)])
    dp.flows_sync(bridge.br, [rule(i, 10, [("drop", 0)], tp_dst=i) for i in range(1, 5)])
    dp.remove_bridge(bridge.br)
    assert len(scans) == 1
    monkeypatch.undo()
    left = [k for k in dp._flows.rules.keys()]
    assert {k.bridge for k in left} == {other.br} and len(left) == 2 * 10
    assert dp.run(frame(sport=45, dport=7), other.ports[0]).rule_id == 45


def test_mask_limit_leaves_table_unchanged(dp, bridge):
    p0 = bridge.ports[0]
    good = [rule(1, 10, [("drop", 0)], tp_dst=80)]
    dp.flows_sync(bridge.br, good)
    too_many = [rule(100 + i, 10, [("drop", 0)], tp_src=(1, 1 << i)) for i in range(16)]
    too_many += [rule(200, 10, [("drop", 0)], tp_dst=(1, 1))]
    assert len(too_many) > MAX_FLOW_MASKS
    with pytest.raises(FailedPrecondition, match=f"at most {MAX_FLOW_MASKS}"):
        dp.flows_sync(bridge.br, too_many)
    assert dp.run(frame(), p0).rule_id == 1
    assert dp.run(frame(sport=1, dport=81), p0).rule_id == 0
    with pytest.raises(InvalidArgument):
        dp.flows_sync(bridge.br, [rule(1, 70000, [("drop", 0)])])
    with pytest.raises(InvalidArgument):
        dp.flows_sync(bridge.br, [DpRule(1, 1, (("nw_dsst", 1, 1),), ())])
    assert dp.run(frame(), p0).rule_id == 1


def test_restart_then_sync_and_counters_survive(dp, bridge, bpffs_dir):
    p0, p1, _ = bridge.ports
    dp.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], tp_dst=80),
                              rule(2, 10, [("drop", 0)], tp_dst=81)])
    dp.run(frame(dport=80), p0, dry_run=False)
    dp.run(frame(dport=81), p0, dry_run=False)
    dp.close()
    dp2 = Datapath(bpffs_dir)
    try:
        assert dp2.run(frame(dport=80), p0).rule_id == 1  # the pinned table works on
        dp2.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], tp_dst=80),
                                   rule(3, 10, [("output", p1)], tp_dst=82)])
        assert dp2.run(frame(dport=81), p0).rule_id == 0
        assert dp2.run(frame(dport=82), p0).rule_id == 3
        c = dp2.flow_counters(bridge.br)
        assert set(c) == {1} and c[1].packets == 1
        assert _entries(dp2, bridge.br, 0) == _entries(dp2, bridge.br, 1)
        assert len(_entries(dp2, bridge.br, 0)) == 2
    finally:
        dp2.close()
    dp._bpf = None
    dp.__init__(bpffs_dir)


def test_remove_bridge_clears_flow_state(dp, bridge):
    p0 = bridge.ports[0]
    dp.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], tp_dst=80)])
    dp.run(frame(), p0, dry_run=False)
    assert dp.flow_counters(bridge.br)
    dp.remove_bridge(bridge.br)
    assert dp.flow_counters(bridge.br) == {}
    assert not any(k.bridge == bridge.br for k in dp._flows.rules.keys())
    assert not any(k.value == bridge.br for k in dp._flows.masks.keys())


def test_mask_needs_skip_lookups_and_keep_matches(dp, bridge):
    """Per mask, the bits all its rules agree on (need_mask/need) are checked before the hash
    lookup. Real tables: rules of one mask that differ only in tp_dst still match; a packet
    that differs in an agreed bit (tcp vs udp) misses. Then the C side is shown to honour the
    need bits: rewritten to demand tp_src 7, a packet that matches the rule misses."""
    p0, _p1, _p2 = bridge.ports
    rules = [rule(i + 1, 100, [("drop", 0)], dl_type=0x0800, nw_proto=17, tp_dst=80 + i)
             for i in range(3)]
    dp.flows_sync(bridge.br, rules)
    assert dp.run(frame(dport=81), p0).rule_id == 2
    assert dp.run(frame(dport=81, proto=6), p0).rule_id == 0
    flows = dp._flows
    for key, leaf in list(flows.masks.items()):
        if key.value == bridge.br:
            m = leaf.m[0]
            m.need_mask.tp_src, m.need.tp_src = 0xFFFF, 7
            flows.masks[key] = leaf
    assert dp.run(frame(dport=81), p0).rule_id == 0
    assert dp.run(frame(dport=81, sport=7), p0).rule_id == 2


def test_mask_needs_follow_incremental_syncs(dp, bridge):
    """The agreed bits are narrowed by added rules and widened again when rules go: every
    rule present still matches after each sync, whatever was added or removed before."""
    p0, _p1, _p2 = bridge.ports
    r80 = rule(1, 100, [("drop", 0)], dl_type=0x0800, nw_proto=17, tp_dst=80)
    r81 = rule(2, 100, [("drop", 0)], dl_type=0x0800, nw_proto=17, tp_dst=81)
    r90 = rule(3, 100, [("drop", 0)], dl_type=0x0800, nw_proto=17, tp_dst=90)
    for table, hits in (([r80], {80: 1}), ([r80, r81], {80: 1, 81: 2}),
                        ([r81], {81: 2, 80: 0}), ([r81, r90], {81: 2, 90: 3}),
                        ([r90, r80], {90: 3, 80: 1, 81: 0})):
        dp.flows_sync(bridge.br, table)
        for dport, rule_id in hits.items():
            assert dp.run(frame(dport=dport), p0).rule_id == rule_id, (table, dport)
    state = dp._flows._bridges[bridge.br]
    (need_mask, need), = state.needs.values()
    assert need_mask["tp_dst"] == 0xFFFF & ~(80 ^ 90) and need["tp_dst"] == 80 & 90


def _bridge_bits(dp) -> set[int]:
    leaf = dp._flows.bridge_set[ctypes.c_int(0)]
    return {w * 64 + b for w, word in enumerate(leaf.bits) for b in range(64) if word >> b & 1}


def test_bridge_bits_follow_the_table_and_gate_the_classifier(dp, bridge, bpffs_dir):
    """flow_bridges has the bit of every bridge with a flow table: set by the first rules,
    cleared by an empty sync and by remove_bridge, rebuilt from the pinned masks by a new
    Datapath. The C side honours it: with the bit cleared by hand, a packet that matches a
    rule of the (still present) table takes the table miss."""
    p0 = bridge.ports[0]
    nbits = len(dp._flows.bridge_set.Leaf().bits) * 64
    assert bridge.br % nbits not in _bridge_bits(dp)
    dp.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], tp_dst=80)])
    assert _bridge_bits(dp) == {bridge.br % nbits}
    assert dp.run(frame(), p0).rule_id == 1
    dp._flows.bridge_set[ctypes.c_int(0)] = dp._flows.bridge_set.Leaf()
    assert dp.run(frame(), p0).rule_id == 0
    dp.close()
    dp._bpf = None
    dp.__init__(bpffs_dir)  # a restart: the bits follow the pinned masks entries
    assert _bridge_bits(dp) == {bridge.br % nbits}
    assert dp.run(frame(), p0).rule_id == 1
    dp.flows_sync(bridge.br, [])
    assert _bridge_bits(dp) == set()
    assert dp.run(frame(), p0).rule_id == 0
    dp.flows_sync(bridge.br, [rule(2, 10, [("drop", 0)], tp_dst=80)])
    assert _bridge_bits(dp) == {bridge.br % nbits}
    dp.remove_bridge(bridge.br)
    assert _bridge_bits(dp) == set()


def test_bridge_bits_shared_by_congruent_bridges(dp, bridge):
    """Two bridges whose ifindexes share a bit: the bit stays while either has a table."""
    flows = dp._flows
    nbits = len(flows.bridge_set.Leaf().bits) * 64
    other = bridge.br + nbits
    flows._tabled.add(other)  # as if a bridge with that ifindex had a table
    flows._publish_tabled()
    dp.flows_sync(bridge.br, [rule(1, 10, [("drop", 0)], tp_dst=80)])
    dp.flows_sync(bridge.br, [])
    assert _bridge_bits(dp) == {bridge.br % nbits}
    flows._tabled.discard(other)
    flows._publish_tabled()
    assert _bridge_bits(dp) == set()
