"""The tunnel maps (bpf/lib/tunnel.h): each tunnel port's VNI and local address (tunnels), and
each bridge's tunnel port with the remote VTEPs its floods are replicated to (vteps, replaced
whole so a flood never sees half a list)."""

from __future__ import annotations

import ipaddress

from vswitchd.datapath import maps
from vswitchd.datapath.constants import MAX_VTEPS
from vswitchd.errors import InvalidArgument


def _ipv4(address: str, field: str) -> int:
    try:
        return int(ipaddress.IPv4Address(address))
    except ValueError:
        raise InvalidArgument(field, address, "is not an IPv4 address (the eBPF datapath's "
                                              "tunnels have an IPv4 underlay)") from None


class TunnelMaps:
    def __init__(self, bpf) -> None:
        self.tunnels = bpf[b"tunnels"]
        self.vteps = bpf[b"vteps"]

    def set_tunnel(self, ifindex: int, vni: int, local: str = "") -> None:
        leaf = self.tunnels.Leaf()
        leaf.vni = vni
        leaf.local.w[0] = _ipv4(local, "local") if local else 0
        self.tunnels[self.tunnels.Key(ifindex)] = leaf

    def set_vteps(self, bridge: int, ifindex: int, addresses: list[str]) -> None:
        if len(addresses) > MAX_VTEPS:
            raise InvalidArgument("remotes", len(addresses),
                                  f"a tunnel port has at most {MAX_VTEPS} remote VTEPs")
        leaf = self.vteps.Leaf()
        leaf.ifindex = ifindex
        leaf.count = len(addresses)
        for i, address in enumerate(addresses):
            leaf.addr[i].w[0] = _ipv4(address, "remotes")
        self.vteps[self.vteps.Key(bridge)] = leaf

    def vteps_of(self, bridge: int) -> tuple[int, list[str]]:
        """(the bridge's tunnel port, its VTEPs); (0, []) without a tunnel."""
        leaf = self.vteps.get(self.vteps.Key(bridge))
        if leaf is None:
            return 0, []
        return leaf.ifindex, [str(ipaddress.IPv4Address(leaf.addr[i].w[0]))
                              for i in range(min(leaf.count, MAX_VTEPS))]

    def forget(self, ifindex: int) -> None:
        """A tunnel port went: its entry, and its bridge's VTEP list."""
        maps.delete(self.tunnels, self.tunnels.Key(ifindex))
        for key, leaf in list(self.vteps.items()):
            if leaf.ifindex == ifindex:
                maps.delete(self.vteps, key)

    def prune(self, keep: set[int]) -> None:
        for key in list(self.tunnels.keys()):
            if key.value not in keep:
                maps.delete(self.tunnels, key)
        for key, leaf in list(self.vteps.items()):
            if key.value not in keep or leaf.ifindex not in keep:
                maps.delete(self.vteps, key)
