"""Flow model, validation and the table manager (pure values, no switch, no kernel)."""

from __future__ import annotations

import time

import pytest
from fakes import DpRule  # noqa: F401 - makes vswitchd.datapath export the flow API shapes

from vswitchd.errors import FailedPrecondition, InvalidArgument
from vswitchd.flows import validate
from vswitchd.flows.model import Action, FlowRequest, Match, Rule
from vswitchd.flows.table import FlowTable

PORTS = {"br0", "c1", "c2", "m0"}
TCP = {"dl_type": 0x0800, "nw_proto": 6}
UDP = {"dl_type": 0x0800, "nw_proto": 17}


def req(actions=(("drop", None),), priority=None, cookie=0, idle=0, hard=0, **match):
    return FlowRequest(priority=priority, cookie=cookie, idle_timeout=idle, hard_timeout=hard,
                       match=match, actions=list(actions))


def rule(actions=(("drop", None),), priority=None, **match) -> Rule:
    return validate.flow(req(actions, priority, **match), bridge="br0", ports=PORTS,
                         max_actions=8)


def error(r: FlowRequest, max_actions: int = 8) -> str:
    with pytest.raises(InvalidArgument) as ei:
        validate.flow(r, bridge="br0", ports=PORTS, max_actions=max_actions)
    return str(ei.value)


class Ids:
    def __init__(self, start: int = 1) -> None:
        self.n = start

    def __call__(self) -> int:
        self.n += 1
        return self.n - 1


# ---- validation: every field and action --------------------------------------------------


@pytest.mark.parametrize("r, message", [
    (req(priority=70000), "priority 70000 out of range 0..65535"),
    (req(priority=-1), "priority -1 out of range 0..65535"),
    (req(idle=70000), "idle_timeout 70000 out of range 0..65535"),
    (req(hard=65536), "hard_timeout 65536 out of range 0..65535"),
    (req(in_port="nosuch"), "in_port=nosuch: no port nosuch on bridge br0"),
    (req(dl_src=("zz", "")), "dl_src=zz: not a MAC address (expected xx:xx:xx:xx:xx:xx)"),
    (req(dl_dst=("02:00:00:00:00:01", "ff:ff")),
     "dl_dst=02:00:00:00:00:01/ff:ff: mask ff:ff is not a MAC address "
     "(expected xx:xx:xx:xx:xx:xx)"),
    (req(dl_type=0x10000), "dl_type 0x10000 out of range 0x0000..0xffff"),
    (req(dl_vlan=5000), "dl_vlan 5000 out of range 0..4095"),
    (req(nw_src="10.0.0.1"), "nw_src=10.0.0.1 needs ip (dl_type=0x0800)"),
    (req(nw_dst="10.0.0.0/8", dl_type=0x86DD), "nw_dst=10.0.0.0/8 needs ip (dl_type=0x0800)"),
    (req(nw_src="10.0.0.300", dl_type=0x0800), "nw_src=10.0.0.300: not an IPv4 address or CIDR"),
    (req(nw_src="10.0.0.0/33", dl_type=0x0800), "nw_src=10.0.0.0/33: not an IPv4 address or CIDR"),
    (req(nw_dst="fd00::1", dl_type=0x0800), "nw_dst=fd00::1: not an IPv4 address or CIDR"),
    (req(ipv6_src="fd00::1"), "ipv6_src=fd00::1 needs ipv6 (dl_type=0x86dd)"),
    (req(ipv6_dst="fd00::/64", dl_type=0x0800),
     "ipv6_dst=fd00::/64 needs ipv6 (dl_type=0x86dd)"),
    (req(ipv6_dst="10.0.0.1", dl_type=0x86DD), "ipv6_dst=10.0.0.1: not an IPv6 address or CIDR"),
    (req(nw_proto=6), "nw_proto=6 needs ip or ipv6 (dl_type=0x0800 or 0x86dd)"),
    (req(nw_proto=6, dl_type=0x0806), "nw_proto=6 needs ip or ipv6 (dl_type=0x0800 or 0x86dd)"),
    (req(nw_proto=300, dl_type=0x0800), "nw_proto 300 out of range 0..255"),
    (req(tp_dst=(80, 0)), "tp_dst=80 needs tcp or udp (nw_proto=6 or 17)"),
    (req(tp_src=(80, 0xFFF0), dl_type=0x0800, nw_proto=1),
     "tp_src=80/0xfff0 needs tcp or udp (nw_proto=6 or 17)"),
    (req(tp_dst=(70000, 0), **TCP), "tp_dst 70000 out of range 0..65535"),
    (req(tp_dst=(80, 0x10000), **TCP), "tp_dst mask 65536 out of range 0..0xffff (0 = exact)"),
    (req(actions=()), "actions= is required; use actions=drop to drop"),
    (req(actions=[("output", "nosuch")]), "output:nosuch: no port nosuch on bridge br0"),
    (req(actions=[("output", "c1")], in_port="c1"),
     "output:c1: c1 is the in_port of this flow and a frame is never sent back out of the "
     "port it came in on"),
    (req(actions=[("mod_vlan_vid", 0)]), "mod_vlan_vid 0 out of range 1..4094"),
    (req(actions=[("mod_vlan_vid", 4095)]), "mod_vlan_vid 4095 out of range 1..4094"),
    (req(actions=[("drop", None), ("normal", None)]),
     "actions=drop,normal: drop cannot be combined with other actions"),
    (req(actions=[("normal", None), ("", None)]),
     "action 2 in actions is empty (set one of drop, normal, flood, output, mod_vlan_vid, "
     "strip_vlan, controller)"),
    (req(actions=[("output", "c2")] * 9), "9 actions: the datapath allows at most 8 per flow"),
    (req(actions=[("output", "c2"), ("normal", None), ("output", "m0"), ("output", "c2")]),
     "output:c2: the flow outputs to c2 twice (a frame leaves a port once)"),
])
def test_validation_messages(r, message):
    assert error(r) == message


def test_unknown_field():
    assert error(req(nw_dsst="10.0.0.1")) == "unknown field nw_dsst"


def test_valid_actions_in_order_are_kept():
    r = rule([("output", "m0"), ("mod_vlan_vid", 10), ("strip_vlan", None), ("flood", None),
              ("normal", None), ("output", "br0")], in_port="c1")
    assert r.actions == (Action("output", "m0"), Action("mod_vlan_vid", 10), Action("strip_vlan"),
                         Action("flood"), Action("normal"), Action("output", "br0"))
    assert r.ports == ("c1", "m0", "br0")
    assert r.priority == 32768


# ---- canonical forms -----------------------------------------------------------------------


def test_canonical_forms_compare_equal():
    a = rule(nw_dst="10.0.0.5/24", dl_src=("02:AA:00:00:00:01", "FF:FF:FF:FF:FF:FF"),
             tp_dst=(80, 0xFFFF), **TCP)
    b = rule(nw_dst="10.0.0.0/24", dl_src=("02-aa-00-00-00-01", ""), tp_dst=(80, 0), **TCP)
    assert a.match == b.match and hash(a.match) == hash(b.match)
    assert a.match.to_ofctl() == "dl_src=02:aa:00:00:00:01,tcp,nw_dst=10.0.0.0/24,tp_dst=80"
    # full masks are exact, zero masks are wildcards
    assert rule(nw_src="10.0.0.7/32", **UDP).match == rule(nw_src="10.0.0.7", **UDP).match
    assert rule(nw_src="0.0.0.0/0", dl_type=0x0800).match == Match(dl_type=0x0800)
    assert rule(dl_dst=("01:00:00:00:00:00", "00:00:00:00:00:00")).match == Match()
    m = rule(ipv6_src="FD00:0:0:0::5/64", dl_type=0x86DD, nw_proto=58).match
    assert m.to_ofctl() == "icmp6,ipv6_src=fd00::/64"
    masked = rule(dl_dst=("01:00:5E:12:34:56", "ff:ff:ff:00:00:00"), tp_src=(0x1234, 0xFF00), **UDP)
    assert masked.match.to_ofctl() == \
        "dl_dst=01:00:5e:00:00:00/ff:ff:ff:00:00:00,udp,tp_src=0x1200/0xff00"
    assert rule(dl_type=0x88CC).match.to_ofctl() == "dl_type=0x88cc"
    assert rule(dl_type=0x0800, nw_proto=47).match.to_ofctl() == "ip,nw_proto=47"


def test_rule_ofctl_and_store_round_trip():
    r = validate.flow(req([("output", "m0"), ("normal", None)], priority=7, cookie=0x7, idle=5,
                          hard=9, in_port="c1", dl_vlan=10, ipv6_dst="fd00::1:0/112",
                          dl_type=0x86DD, nw_proto=17, tp_dst=(53, 0)),
                      bridge="br0", ports=PORTS, max_actions=8)
    r = r.installed(42, 1_700_000_000.25, 10**12)
    assert r.to_ofctl() == ("cookie=0x7,priority=7,in_port=c1,dl_vlan=10,udp6,"
                            "ipv6_dst=fd00::1:0/112,tp_dst=53,idle_timeout=5,hard_timeout=9,"
                            "actions=output:m0,normal")
    back = Rule.from_store(r.to_store(), now_wall=1_700_000_010.25, now_ns=2 * 10**12)
    assert back == r.installed(42, 1_700_000_000.25, 2 * 10**12 - 10 * 10**9)
    assert back.same_content(r)


# ---- the table -----------------------------------------------------------------------------


def test_add_replace_same_match_and_priority_gets_a_new_id():
    t = FlowTable()
    ids = Ids()
    assert t.add([rule(priority=10, **UDP)], ids, 1.0, 1) == (1, 0)
    new = rule([("normal", None)], priority=10, **UDP)
    assert t.add([new], ids, 2.0, 2) == (0, 1)
    (only,) = t.rules()
    assert (only.rule_id, only.actions, only.installed_ns) == (2, (Action("normal"),), 2)
    # same match, other priority: a second rule
    assert t.add([rule(priority=11, **UDP)], ids, 3.0, 3) == (1, 0)
    assert [r.priority for r in t.rules()] == [11, 10]


def test_overlap_rejected_names_the_other_rule():
    t = FlowTable()
    t.add([rule(priority=100, tp_dst=(53, 0), **UDP)], Ids(), 0, 0)
    with pytest.raises(FailedPrecondition) as ei:
        t.add([rule(priority=100, nw_dst="10.0.0.0/8", **UDP)], Ids(10), 0, 0)
    assert str(ei.value) == (
        "flow 1: overlaps priority=100,udp,tp_dst=53,actions=drop: a packet could match both "
        "at priority 100; give one a different priority or make the matches disjoint")
    # disjoint values, a different priority, or a different protocol are fine
    t.add([rule(priority=100, tp_dst=(54, 0), **UDP),
           rule(priority=101, nw_dst="10.0.0.0/8", **UDP),
           rule(priority=100, tp_dst=(53, 0), **TCP),
           rule(priority=100, in_port="c1", dl_type=0x86DD)], Ids(20), 0, 0)
    assert len(t) == 5


@pytest.mark.parametrize("a, b, overlaps", [
    ({"in_port": "c1"}, {"in_port": "c2"}, False),
    ({"in_port": "c1"}, {"dl_type": 0x0800}, True),
    ({"dl_src": ("02:00:00:00:00:00", "ff:00:00:00:00:00")},
     {"dl_src": ("02:00:00:00:00:01", "")}, True),
    ({"dl_src": ("02:00:00:00:00:00", "ff:00:00:00:00:00")},
     {"dl_src": ("04:00:00:00:00:01", "")}, False),
    ({"nw_dst": "10.0.0.0/8", **UDP}, {"nw_dst": "10.1.0.0/16", **UDP}, True),
    ({"nw_dst": "10.0.0.0/8", **UDP}, {"nw_dst": "11.1.0.0/16", **UDP}, False),
    ({"tp_dst": (0x1000, 0xF000), **UDP}, {"tp_dst": (0x1234, 0), **UDP}, True),
    ({"tp_dst": (0x1000, 0xF000), **UDP}, {"tp_dst": (0x2234, 0), **UDP}, False),
    ({"dl_vlan": 5}, {"nw_proto": 6, "dl_type": 0x86DD}, True),
])
def test_overlap_rule(a, b, overlaps):
    t = FlowTable()
    t.add([rule(priority=5, **a)], Ids(), 0, 0)
    if overlaps:
        with pytest.raises(FailedPrecondition, match="overlaps"):
            t.add([rule(priority=5, **b)], Ids(10), 0, 0)
    else:
        t.add([rule(priority=5, **b)], Ids(10), 0, 0)


def test_batch_is_all_or_nothing_and_overlaps_inside_a_batch_name_the_flow():
    t = FlowTable()
    t.add([rule(priority=1, tp_dst=(1, 0), **UDP)], Ids(), 0, 0)
    before = t.store_list()
    batch = [rule(priority=1, tp_dst=(2, 0), **UDP), rule(priority=1, tp_dst=(1, 0), **UDP),
             rule(priority=2, **UDP), rule(priority=2, in_port="c1")]
    with pytest.raises(InvalidArgument) as ei:
        t.add(batch, Ids(10), 0, 0)
    assert str(ei.value) == (
        "flow 4: match overlaps flow 3 (priority=2,udp,actions=drop): a packet could match both at "
        "priority 2; give one a different priority or make the matches disjoint")
    assert t.store_list() == before
    assert len(t) == 1 and t.overlapping(rule(priority=2, in_port="c1")) is None


def test_replace_all_keeps_unchanged_rules_and_their_ids():
    t = FlowTable()
    keep, change, drop = (rule(priority=1, tp_dst=(1, 0), **UDP),
                          rule(priority=1, tp_dst=(2, 0), **UDP),
                          rule(priority=1, tp_dst=(3, 0), **UDP))
    t.add([keep, change, drop], Ids(), 0, 0)
    kept_id = t.get(1, keep.match).rule_id
    changed = rule([("normal", None)], priority=1, tp_dst=(2, 0), **UDP)
    new = rule(priority=9, **TCP)
    assert t.replace_all([keep, changed, new], Ids(100), 5.0, 5) == (2, 2, 1)
    assert t.get(1, keep.match).rule_id == kept_id
    assert t.get(1, changed.match).rule_id >= 100 and t.get(1, drop.match) is None
    with pytest.raises(InvalidArgument, match="flow 2: match overlaps flow 1"):
        t.replace_all([rule(priority=1, **UDP), rule(priority=1, tp_dst=(7, 0), **UDP)],
                      Ids(200), 0, 0)
    assert len(t) == 3 and t.get(1, keep.match).rule_id == kept_id


def test_delete_strict_loose_cookie():
    t = FlowTable()
    rules = [
        validate.flow(req(priority=10, cookie=0x11, in_port="c1", tp_dst=(80, 0), **TCP),
                      bridge="br0", ports=PORTS, max_actions=8),
        validate.flow(req(priority=10, cookie=0x12, in_port="c1", **UDP),
                      bridge="br0", ports=PORTS, max_actions=8),
        validate.flow(req(priority=20, cookie=0x21, nw_dst="10.1.0.0/16", **TCP),
                      bridge="br0", ports=PORTS, max_actions=8),
        validate.flow(req(cookie=0x22, in_port="c2"), bridge="br0", ports=PORTS, max_actions=8),
    ]
    t.add(rules, Ids(), 0, 0)
    # strict needs identical match and priority
    assert t.delete(rules[0].match, strict=True, priority=11) == []
    assert t.delete(Match(in_port="c1"), strict=True, priority=10) == []
    assert [r.cookie for r in t.delete(rules[0].match, strict=True, priority=10)] == [0x11]
    t.add([rules[0]], Ids(10), 0, 0)
    # loose: every rule at least as specific
    loose = t.delete(rules[0].match._replace(tp_dst=None))  # in_port=c1,tcp
    assert [r.cookie for r in loose] == [0x11]
    t.add([rules[0]], Ids(20), 0, 0)
    m = validate.match({"dl_type": 0x0800, "nw_dst": "10.0.0.0/8"}, bridge="br0", ports=PORTS)
    assert [r.cookie for r in t.delete(m)] == [0x21]          # /16 is inside /8
    t.add([rules[2]], Ids(30), 0, 0)
    m24 = validate.match({"dl_type": 0x0800, "nw_dst": "10.1.2.0/24"}, bridge="br0", ports=PORTS)
    assert t.delete(m24) == []                               # the /16 rule is less specific
    # cookie filter, with and without a match
    assert sorted(r.cookie for r in t.delete(cookie=0x10, cookie_mask=0xF0)) == [0x11, 0x12]
    assert [r.cookie for r in t.delete(Match(in_port="c2"), cookie=0x22, cookie_mask=-1 & 0xFF)
            ] == [0x22]
    assert [r.cookie for r in t.delete()] == [0x21]
    assert len(t) == 0


def test_expiry_with_a_fake_clock():
    t = FlowTable()
    s = 10**9
    t.add([rule(priority=1, idle=10, tp_dst=(1, 0), **UDP)], Ids(1), 0, 100 * s)
    t.add([rule(priority=1, hard=10, tp_dst=(2, 0), **UDP)], Ids(2), 0, 100 * s)
    t.add([rule(priority=1, tp_dst=(3, 0), **UDP)], Ids(3), 0, 100 * s)
    hits = {1: 0}
    assert t.expired(109 * s, hits.get) == []
    hits[1] = 105 * s                                         # idle counts from the last hit
    assert [r.rule_id for r in t.expired(110 * s, hits.get)] == [2]
    assert [r.rule_id for r in t.expired(115 * s, hits.get)] == [1, 2]
    assert t.has_timeouts


def test_to_dp_rules():
    t = FlowTable()
    r1 = rule([("output", "m0"), ("mod_vlan_vid", 7), ("normal", None)], priority=3,
              in_port="c1", nw_src="10.0.0.0/24", tp_dst=(0x50, 0xFFF0), **TCP)
    r2 = rule(priority=4, ipv6_dst="fd00::1", dl_type=0x86DD,
              dl_src=("02:aa:00:00:00:01", ""))
    t.add([r1, r2], Ids(), 0, 0)
    ifindex = {"c1": 11, "m0": 13, "br0": 10}
    rules, skipped = t.to_dp_rules(ifindex.get)
    assert skipped == []
    by_id = {r.rule_id: r for r in rules}
    assert by_id[1].priority == 3
    assert by_id[1].fields == (
        ("dl_type", 0x0800, 0xFFFF), ("in_port", 11, 0xFFFFFFFF),
        ("ip_src", 0x0A000000 << 96, 0xFFFFFF00 << 96), ("nw_proto", 6, 0xFF),
        ("tp_dst", 0x50, 0xFFF0))
    assert by_id[1].actions == (("output", 13), ("mod_vlan_vid", 7), ("normal", 0))
    assert by_id[2].fields == (("dl_src", 0x02AA00000001, (1 << 48) - 1),
                               ("dl_type", 0x86DD, 0xFFFF),
                               ("ip_dst", (0xFD00 << 112) | 1, (1 << 128) - 1))
    assert by_id[2].actions == (("drop", 0),)
    again, _ = t.to_dp_rules(ifindex.get)
    assert {r.rule_id: r for r in again} == by_id
    ifindex["m0"] = 99                                       # a re-created port: re-resolved
    moved, _ = t.to_dp_rules(ifindex.get)
    assert {r.rule_id: r for r in moved}[1].actions[0] == ("output", 99)
    del ifindex["c1"]                                        # a missing port: left out
    rules, skipped = t.to_dp_rules(ifindex.get)
    assert [r.rule_id for r in rules] == [2] and [r.rule_id for r in skipped] == [1]


def test_to_dp_rules_converts_only_what_changed():
    t = FlowTable()
    t.add([rule(priority=1, in_port="c1", **UDP), rule(priority=2, **TCP),
           rule([("output", "m0")], priority=3)], Ids(), 0, 0)
    calls = []

    def ifindex(name):
        calls.append(name)
        return {"c1": 11, "m0": 13}.get(name)

    first, _ = t.to_dp_rules(ifindex)
    assert sorted(calls) == ["c1", "m0"]                     # once per port, not per rule
    t.add([rule(priority=4, **UDP)], Ids(10), 0, 0)
    second, _ = t.to_dp_rules(ifindex)
    old = {r.rule_id: r for r in first}
    new = {r.rule_id: r for r in second}
    assert sorted(new) == [1, 2, 3, 10]
    assert all(new[i] is old[i] for i in (1, 2, 3))          # unchanged: the same objects
    t.delete(Match(dl_type=0x0800, nw_proto=6), strict=True, priority=2)
    third, _ = t.to_dp_rules(ifindex)
    assert sorted(r.rule_id for r in third) == [1, 3, 10]
    assert [r.rule_id for r in t.referencing("m0")] == [3]
    assert [r.rule_id for r in t.referencing("c1")] == [1]


def test_store_rows_snapshots_say_what_changed():
    t = FlowTable()
    t.add([rule(priority=1, **UDP), rule(priority=2, **TCP)], Ids(), 1.0, 1)
    a = t.store_rows()
    assert t.store_rows() is a and sorted(a) == [1, 2]
    assert a[1] == t.get(1, rule(**UDP).match).to_store()
    t.add([rule(priority=3, **UDP)], Ids(3), 1.0, 1)
    t.delete(rule(**TCP).match, strict=True, priority=2)
    b = t.store_rows()
    assert b.base is a and b.changed == {2, 3} and sorted(b) == [1, 3]
    assert sorted(a) == [1, 2]                                # a snapshot never changes
    t.begin()
    t.add([rule(priority=4, **UDP)], Ids(4), 1.0, 1)
    t.rollback()
    c = t.store_rows()
    assert c.base is b and dict(c) == dict(b) and b.base is None


def test_signature_made_by_validation_is_the_rules():
    from vswitchd.flows.model import _signature

    for r in (rule(in_port="c1", dl_vlan=7, **TCP, tp_src=(0x50, 0xFFF0), tp_dst=(443, 0)),
              rule(dl_src=("02:aa:00:00:00:01", "00:00:00:00:00:00"), dl_dst=("01:00:5e:00:00:00",
                                                                          "ff:ff:ff:00:00:00")),
              rule(dl_type=0x0800, nw_src="10.1.2.3", nw_dst="0.0.0.0/0", nw_proto=47),
              rule(dl_type=0x86DD, ipv6_src="fd00::/8", ipv6_dst="fd00::1", **{"nw_proto": 17}),
              rule()):
        assert r.signature == _signature(r.match) == tuple(
            (name, mask) for name, _v, mask in r.match.terms())


def test_stored_text_is_the_format_value_form():
    """Rule.to_store builds its text with per-field formatters: the same as format_value."""
    cases = [
        rule(in_port="c1", dl_vlan=7, **TCP, tp_src=(0x50, 0xFFF0), tp_dst=(443, 0)),
        rule(dl_src=("02:AA:00:00:00:01", ""), dl_dst=("01:00:5e:00:00:00", "ff:ff:ff:00:00:00")),
        rule(dl_type=0x0800, nw_src="10.1.2.3", nw_dst="192.168.0.0/16", nw_proto=47),
        rule(dl_type=0x86DD, ipv6_src="fd00::/8", ipv6_dst="fd00::1", nw_proto=17,
             tp_dst=(53, 0)),
        rule([("output", "m0"), ("mod_vlan_vid", 9), ("normal", None)], dl_type=0x88CC),
    ]
    for r in cases:
        r = r.installed(9, 1_700_000_000.5, 0)
        head = f"9 {r.priority} 0x0 0 0 1700000000.500"
        expect = " ".join([head, *r.match.to_tokens(), "actions", *(str(a) for a in r.actions)])
        assert r.to_store() == expect
        assert Rule.from_store(expect, 0.0, 0).same_content(r)


def test_performance_10k_batch_into_100k_table():
    """Adding 10 000 rules in one batch to a 100 000-rule table is well under a second."""

    def many(n0, n, prio):
        out = []
        for i in range(n0, n0 + n):
            m = Match(dl_type=0x0800, nw_proto=17, nw_dst=((0x0A000000 + i) & 0xFFFFFFFF,
                                                           0xFFFFFFFF), tp_dst=(i % 1000, 0xFFFF))
            out.append(Rule(priority=prio + i % 4, match=m, actions=(Action("drop"),)))
        return out

    t = FlowTable()
    # the base table mixes 4 priorities and 3 signatures, so overlap checks use the indexes
    base = many(0, 60_000, 100)
    base += [Rule(priority=100 + i % 4, match=Match(dl_type=0x0800, nw_proto=17,
                                                    nw_dst=((0x0B000000 + (i << 8)), 0xFFFFFF00)),
                  actions=(Action("drop"),)) for i in range(40_000)]
    t.add(base, Ids(), 0, 0)
    t.add([Rule(priority=100, match=Match(dl_type=0x86DD), actions=(Action("drop"),))], Ids(10**6),
          0, 0)
    assert len(t) == 100_001
    batch = many(200_000, 10_000, 100)
    start = time.perf_counter()
    assert t.add(batch, Ids(2 * 10**6), 0, 0) == (10_000, 0)
    took = time.perf_counter() - start
    print(f"\n10 000 rules into a 100 001-rule table: {took:.3f} s "
          f"({10_000 / took:,.0f} rules/s)")
    assert took < 3.0
    start = time.perf_counter()
    texts = t.store_list()
    loaded = [Rule.from_store(s, 0.0, 0) for s in texts]
    print(f"store round trip of {len(texts)} rules: {time.perf_counter() - start:.3f} s")
    assert len(loaded) == 110_001
