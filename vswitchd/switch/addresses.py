"""The IP addresses on bridges: the bridge device's (its own and those an uplink brought from
the NIC) and its veth ports' (on the peers). One bridge holds an address once, and no two
bridges share a subnet (routing between them would be ambiguous)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from vswitchd.errors import InvalidArgument
from vswitchd.model import Bridge


def bridge_addresses(br: Bridge) -> list[str]:
    """The bridge's own addresses and those its uplink brought from the NIC."""
    out = list(br.spec.addresses)
    for p in br.ports.values():
        out += [a for a in p.facts.uplink_addresses if a not in out]
    return out


def _holders(br: Bridge) -> Iterator[tuple[str, str]]:
    """(address, who holds it) of everything on BR."""
    for cidr in bridge_addresses(br):
        yield cidr, f"bridge {br.name}"
    for p in br.ports.values():
        for cidr in p.spec.addresses:
            yield cidr, f"port {p.name} of bridge {br.name}"


def check_unused(br: Bridge, addresses: Iterable[str], field: str = "ip") -> None:
    """None of ADDRESSES is on BR already (whatever its prefix length)."""
    held = {ipaddress.ip_interface(cidr).ip: who for cidr, who in _holders(br)}
    for cidr in addresses:
        who = held.get(ipaddress.ip_interface(cidr).ip)
        if who is not None:
            raise InvalidArgument(field, cidr, f"is already the address of {who}")


def check_overlap(bridges: Iterable[Bridge], name: str, addresses: Iterable[str],
                  field: str = "ip") -> None:
    """ADDRESSES (of bridge NAME or one of its ports) lie in no subnet of another bridge."""
    others = [b for b in bridges if b.name != name]
    for cidr in addresses:
        net = ipaddress.ip_interface(cidr).network
        for other in others:
            for theirs in bridge_addresses(other):
                their_net = ipaddress.ip_interface(theirs).network
                if their_net.version == net.version and net.overlaps(their_net):
                    raise InvalidArgument(field, cidr, f"overlaps {theirs} of bridge {other.name}")
