"""NAT rules through libnftables, in the test process's private network namespace."""

from __future__ import annotations

import json

import pytest

from vswitchd.netlink import nat

pytestmark = pytest.mark.root


@pytest.fixture
def table():
    n = nat.Nat()
    yield n
    for bridge in list(n.rules()):
        n.remove(bridge)


def listed(n: nat.Nat) -> list[dict]:
    rc, out, _ = n._nft.cmd("list ruleset")
    assert rc == 0
    return json.loads(out)["nftables"]


def test_masquerade_rule_per_bridge_replace_and_remove(table):
    table.masquerade("br0", "10.9.0.1/24")
    table.masquerade("br1", "10.8.0.0/16")
    assert table.rules() == {"br0": "10.9.0.0/24", "br1": "10.8.0.0/16"}
    rules = [i["rule"] for i in listed(table) if "rule" in i]
    assert len(rules) == 2
    br0 = next(r for r in rules if r["comment"] == "vswitchd:br0")
    assert {"masquerade": None} in br0["expr"]
    assert {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "br0"}} \
        in br0["expr"]

    table.masquerade("br0", "10.7.0.1/24")  # replaces, never duplicates
    assert table.rules() == {"br0": "10.7.0.0/24", "br1": "10.8.0.0/16"}
    assert table.remove("br0") is True
    assert table.remove("br0") is False
    assert table.rules() == {"br1": "10.8.0.0/16"}
    table.remove("br1")
    assert not any("table" in i and i["table"]["name"] == nat.TABLE for i in listed(table))


def test_other_tables_are_untouched(table):
    rc, _, err = table._nft.cmd("add table ip someone_else")
    assert rc == 0, err
    try:
        table.masquerade("br0", "10.9.0.0/24")
        table.remove("br0")
        names = {i["table"]["name"] for i in listed(table) if "table" in i}
        assert "someone_else" in names and nat.TABLE not in names
    finally:
        table._nft.cmd("delete table ip someone_else")


def test_enable_ip_forwarding():
    with open(nat.IP_FORWARD, "w") as fh:
        fh.write("0\n")
    assert nat.enable_ip_forwarding() is True
    assert nat.enable_ip_forwarding() is False
    with open(nat.IP_FORWARD) as fh:
        assert fh.read().strip() == "1"
