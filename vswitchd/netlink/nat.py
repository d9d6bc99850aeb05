"""Masquerading for bridges with --nat, in an nftables table of vswitchd's own.

Rules go through libnftables' JSON interface (Debian's python3-nftables), never through a shell
or nft command strings. One rule per bridge, tagged with the comment "vswitchd:BRIDGE":
traffic from the bridge's subnet leaving by any other interface is masqueraded. The table goes
away with its last rule. Operates in the network namespace of the calling process.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from typing import Any

from vswitchd.errors import FailedPrecondition, Unavailable

FAMILY = "ip"
TABLE = "vswitchd_nat"
CHAIN = "postrouting"
COMMENT_PREFIX = "vswitchd:"
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


class Nat:
    def __init__(self) -> None:
        try:
            import nftables
        except ImportError:
            raise Unavailable(
                "NAT needs libnftables' Python binding (Debian package python3-nftables)"
            ) from None
        self._nft = nftables.Nftables()
        self._nft.set_json_output(True)
        self._nft.set_handle_output(True)
        self._lock = threading.Lock()

    def _run(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        rc, out, err = self._nft.json_cmd({"nftables": commands})
        if rc != 0:
            raise FailedPrecondition(f"nftables refused the NAT change: {err.strip()}")
        return out if isinstance(out, dict) else (json.loads(out) if out else {})

    def _rules(self) -> list[dict[str, Any]]:
        rc, out, _ = self._nft.cmd(f"list table {FAMILY} {TABLE}")  # fixed string, no user input
        if rc != 0:
            return []  # no table yet
        items = json.loads(out).get("nftables", [])
        return [i["rule"] for i in items if "rule" in i]

    def rules(self) -> dict[str, str]:
        """Bridge -> masqueraded subnet, as installed."""
        out = {}
        for rule in self._rules():
            comment = rule.get("comment", "")
            if not comment.startswith(COMMENT_PREFIX):
                continue
            for expr in rule.get("expr", []):
                right = expr.get("match", {}).get("right")
                if isinstance(right, dict) and "prefix" in right:
                    prefix = right["prefix"]
                    out[comment[len(COMMENT_PREFIX):]] = f"{prefix['addr']}/{prefix['len']}"
        return out

    def _delete_commands(self, bridge: str) -> list[dict[str, Any]]:
        return [
            {"delete": {"rule": {"family": FAMILY, "table": TABLE, "chain": CHAIN,
                                 "handle": rule["handle"]}}}
            for rule in self._rules()
            if rule.get("comment") == COMMENT_PREFIX + bridge
        ]

    def masquerade(self, bridge: str, subnet: str) -> None:
        """Masquerade SUBNET leaving by any interface but BRIDGE; replaces the bridge's rule."""
        net = ipaddress.IPv4Network(subnet, strict=False)
        rule = {
            "family": FAMILY, "table": TABLE, "chain": CHAIN,
            "comment": COMMENT_PREFIX + bridge,
            "expr": [
                {"match": {"op": "==",
                           "left": {"payload": {"protocol": "ip", "field": "saddr"}},
                           "right": {"prefix": {"addr": str(net.network_address),
                                                "len": net.prefixlen}}}},
                {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": bridge}},
                {"counter": {"packets": 0, "bytes": 0}},
                {"masquerade": None},
            ],
        }
        with self._lock:
            self._run([
                {"add": {"table": {"family": FAMILY, "name": TABLE}}},
                {"add": {"chain": {"family": FAMILY, "table": TABLE, "name": CHAIN,
                                   "type": "nat", "hook": "postrouting", "prio": 100,
                                   "policy": "accept"}}},
                *self._delete_commands(bridge),
                {"add": {"rule": rule}},
            ])

    def enable_ip_forwarding(self) -> bool:
        """See enable_ip_forwarding(); a method so the switch can be given a fake Nat."""
        return enable_ip_forwarding()

    def disable_ip_forwarding(self) -> None:
        """Undo of a failed change that turned forwarding on."""
        with open(IP_FORWARD, "w") as fh:
            fh.write("0\n")

    def remove(self, bridge: str) -> bool:
        """Remove the bridge's rule; the table goes with its last rule. False if there was none."""
        with self._lock:
            deletes = self._delete_commands(bridge)
            if deletes:
                self._run(deletes)
            if not self._rules():
                rc, _, _ = self._nft.cmd(f"list table {FAMILY} {TABLE}")
                if rc == 0:
                    self._run([{"delete": {"table": {"family": FAMILY, "name": TABLE}}}])
            return bool(deletes)


def enable_ip_forwarding() -> bool:
    """Turn on IPv4 forwarding in this network namespace; True if it was off."""
    with open(IP_FORWARD) as fh:
        if fh.read().strip() == "1":
            return False
    with open(IP_FORWARD, "w") as fh:
        fh.write("1\n")
    return True
