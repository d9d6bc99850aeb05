"""Property-based fuzzing of flow-rule text (ovs-ofctl syntax), the way vswctl and the
configuration file read it: vswapi.flowspec.parse_flow, then the daemon's validation
(vswitchd.flows.validate.flow). Random tokens, mutated valid rules, huge numbers, bad
masks/MACs/IPs: parsing fails only with FlowSyntaxError, validation only with InvalidArgument
naming its field; what parses round-trips (format_flow, and the daemon's Rule.to_ofctl)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import budget
from vswapi.flowspec import (
    FLOW_FIELDS,
    MATCH_FIELDS,
    NO_ARG_ACTIONS,
    SHORTHANDS,
    FlowSyntaxError,
    format_flow,
    parse_flow,
)
from vswitchd.errors import InvalidArgument
from vswitchd.flows import validate
from vswitchd.flows.request import from_message

pytestmark = pytest.mark.property

PORTS = {"br0", "c1", "c2", "m0"}
VALID = [
    "priority=200,in_port=c1,tcp,tp_dst=80,actions=drop",
    "cookie=0x7,priority=10,udp,nw_src=10.0.0.0/8,tp_src=53,actions=output:c2,normal",
    "dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00,actions=controller:64",
    "ipv6,ipv6_dst=fd00::/64,actions=flood",
    "dl_vlan=10,actions=strip_vlan,output:m0",
    "in_port=c2,actions=mod_vlan_vid:20,output:c1",
    "idle_timeout=30,hard_timeout=60,ip,nw_proto=1,actions=normal",
    "priority=0,actions=controller",
    "udp6,tp_dst=0x1000/0xf000,actions=drop",
]
NUMBERS = ["0", "1", "-1", "65535", "65536", "4094", "4095", "0x0800", "0xffffffff",
           str(2**32), str(2**64 - 1), str(2**64), "9" * 40, "0x", "1e3", "", " 1", "+1",
           "0b1", "1_000", "٣"]
MACS = ["02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff", "02:00:00:00:00", "02-00-00-00-00-01",
        "0g:00:00:00:00:00", "02:00:00:00:00:01/ff:ff:ff:ff:ff:00", "02:00:00:00:00:01/",
        "02:00:00:00:00:01/zz", "02:00:00:00:00:01/00:00:00:00:00:00"]
IPS = ["10.0.0.1", "10.0.0.0/8", "10.0.0.1/33", "10.0.0.1/-1", "256.1.1.1", "10.0.0.0/255.0.0.0",
       "10.0.0.0/0.255.0.0", "fd00::1", "fd00::/129", "::", "10.0.0.1/", "/8", "1.2.3"]
PORT_NAMES = [*sorted(PORTS), "nosuch", "", "LOCAL", "c1,c2", "a" * 16]
VALUES = st.one_of(st.sampled_from(NUMBERS + MACS + IPS + PORT_NAMES),
                   st.integers(-2**70, 2**70).map(str), st.text(max_size=12))
KEYS = st.sampled_from([*MATCH_FIELDS, *FLOW_FIELDS, "actions", "nosuch", ""])
ACTION = st.one_of(
    st.sampled_from([*NO_ARG_ACTIONS, "controller", "output", "mod_vlan_vid", "bogus", ""]),
    st.tuples(st.sampled_from(["output", "mod_vlan_vid", "controller", "drop", "x"]),
              st.sampled_from([":", "=", ""]), VALUES).map("".join),
)
TOKEN = st.one_of(
    st.sampled_from(sorted(SHORTHANDS)),
    st.tuples(KEYS, st.sampled_from(["=", ":", ""]), VALUES).map("".join),
)


@st.composite
def random_rule(draw) -> str:
    tokens = draw(st.lists(TOKEN, max_size=6))
    if draw(st.integers(0, 4)):  # mostly with actions
        tokens.append("actions=" + ",".join(draw(st.lists(ACTION, max_size=4))))
    return draw(st.sampled_from([",", ", ", " ", ",,"])).join(tokens)


@st.composite
def mutated_rule(draw) -> str:
    text = draw(st.sampled_from(VALID))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace", "number"]))
        if how == "insert":
            text = text[:at] + draw(st.sampled_from([",", "=", ":", "/", " ", "0", "x", "-"]
                                                    + NUMBERS[:8])) + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 6)):]
        elif how == "replace":
            text = text[:at] + draw(st.characters()) + text[at + 1:]
        else:  # every number in the rule replaced by a boundary or huge one
            import re

            text = re.sub(r"\b\d+\b", draw(st.sampled_from(NUMBERS)), text, count=1)
    return text


RULES = st.one_of(random_rule(), mutated_rule(), st.sampled_from(VALID), st.text(max_size=80))


def _same(a, b) -> bool:
    return (a.priority, a.match, a.actions, a.cookie, a.idle_timeout, a.hard_timeout) == \
        (b.priority, b.match, b.actions, b.cookie, b.idle_timeout, b.hard_timeout)


def check_rule(text: str) -> None:
    try:
        flow = parse_flow(text)
    except FlowSyntaxError as exc:
        assert str(exc), f"{text!r}: an empty message"
        return
    again = parse_flow(format_flow(flow))
    assert again == flow, f"{text!r}: format_flow gave {format_flow(flow)!r}"
    try:
        rule = validate.flow(from_message(flow), bridge="br0", ports=PORTS, max_actions=8)
    except InvalidArgument as exc:
        assert exc.field, f"{text!r}: {exc} names no field"
        assert str(exc.field) in str(exc) or str(exc.field) in text, \
            f"{text!r}: the message {exc} does not name {exc.field}"
        return
    canonical = rule.to_ofctl()
    back = validate.flow(from_message(parse_flow(canonical)), bridge="br0", ports=PORTS,
                         max_actions=8)
    assert _same(back, rule), f"{text!r} -> {canonical!r} -> {back.to_ofctl()!r}"


@budget(400)
@given(RULES)
def test_flow_text(text):
    check_rule(text)


@pytest.mark.parametrize("text", VALID)
def test_the_valid_rules_are_valid(text):
    """The seeds of the mutations parse and validate (else the fuzzing starts off nowhere)."""
    rule = validate.flow(from_message(parse_flow(text)), bridge="br0", ports=PORTS,
                         max_actions=8)
    assert rule.actions
