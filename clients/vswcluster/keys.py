"""The etcd key layout of the cluster agent, and its JSON values (README "Cluster agent").

Every key lives under the versioned prefix PREFIX and under the lease of the host that wrote it:

    /vswitchd/v1/hosts/{host}                          {"vtep": "10.77.0.1"}
    /vswitchd/v1/vnis/{vni}/vteps/{host}               {"vtep": "10.77.0.1"}
    /vswitchd/v1/vnis/{vni}/macs/{host}/{vlan}/{mac}   {"vtep": "10.77.0.1", "ips": ["10.5.0.1"]}

vni and vlan are decimal, mac lower-case xx:xx:xx:xx:xx:xx. A host name may not contain "/".
Values are compact JSON with sorted keys, so the same content is always the same bytes (an
agent compares bytes to decide whether to write).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

PREFIX = "/vswitchd/v1/"


def check_host(host: str) -> str:
    if not host or "/" in host or host.strip() != host:
        raise ValueError(f"host name {host!r} must be non-empty, without '/' or blanks")
    return host


def host_key(host: str) -> str:
    return f"{PREFIX}hosts/{host}"


def vtep_key(vni: int, host: str) -> str:
    return f"{PREFIX}vnis/{vni}/vteps/{host}"


def mac_key(vni: int, host: str, vlan: int, mac: str) -> str:
    return f"{PREFIX}vnis/{vni}/macs/{host}/{vlan}/{mac.lower()}"


def encode(value: dict) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def vtep_value(vtep: str) -> str:
    return encode({"vtep": vtep})


def mac_value(vtep: str, ips: list[str] | tuple[str, ...]) -> str:
    return encode({"vtep": vtep, "ips": sorted(set(ips))})


@dataclass(frozen=True)
class MacRecord:
    host: str
    vtep: str
    ips: tuple[str, ...]
    revision: int  # mod_revision: the newest record of a MAC wins (a moved VM)


@dataclass
class ClusterView:
    """What the cluster published, parsed from the mirror of PREFIX."""

    hosts: dict[str, str] = field(default_factory=dict)             # host -> vtep
    vteps: dict[int, dict[str, str]] = field(default_factory=dict)  # vni -> host -> vtep
    macs: dict[int, dict[tuple[int, str], list[MacRecord]]] = field(default_factory=dict)
    ignored: int = 0  # keys under PREFIX that do not parse (another version's, or garbage)


def parse(mirror: dict[str, tuple[str, int]]) -> ClusterView:
    """mirror: key -> (value, mod_revision), as read from etcd."""
    view = ClusterView()
    for key, (raw, rev) in mirror.items():
        if not key.startswith(PREFIX):
            continue
        parts = key[len(PREFIX):].split("/")
        try:
            value = json.loads(raw)
            vtep = str(value["vtep"])
            if len(parts) == 2 and parts[0] == "hosts":
                view.hosts[parts[1]] = vtep
            elif len(parts) == 4 and parts[0] == "vnis" and parts[2] == "vteps":
                view.vteps.setdefault(int(parts[1]), {})[parts[3]] = vtep
            elif len(parts) == 6 and parts[0] == "vnis" and parts[2] == "macs":
                vni, host, vlan, mac = int(parts[1]), parts[3], int(parts[4]), parts[5].lower()
                ips = tuple(str(i) for i in value.get("ips", []))
                view.macs.setdefault(vni, {}).setdefault((vlan, mac), []).append(
                    MacRecord(host, vtep, ips, rev))
            else:
                view.ignored += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            view.ignored += 1
    return view


def host_of(key: str) -> str | None:
    """The host a key belongs to (None: not one of ours)."""
    if not key.startswith(PREFIX):
        return None
    parts = key[len(PREFIX):].split("/")
    if len(parts) == 2 and parts[0] == "hosts":
        return parts[1]
    if len(parts) == 4 and parts[0] == "vnis" and parts[2] == "vteps":
        return parts[3]
    if len(parts) == 6 and parts[0] == "vnis" and parts[2] == "macs":
        return parts[3]
    return None
