"""Desired state from the cluster view and the local switch -> actions. Pure functions: no I/O.

Two directions:
- program(): what this host's vswitchd must get: on every managed tunnel port, the VTEPs other
  hosts published for its VNI (the port's remotes) and the MACs they published (static FDB
  entries on the tunnel port with their remote VTEP); stale entries of ours go.
- publish(): the keys this host must hold in etcd (keys.py) for its local ports.

The agent owns exactly the static FDB entries of managed tunnel ports that have a remote: it
never touches other entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vswcluster import keys


@dataclass(frozen=True)
class Tunnel:
    """A tunnel port (PORT_TYPE_VXLAN) of the local vswitchd, as the daemon reports it."""

    bridge: str
    port: str
    vni: int
    local: str                                  # the port's local address ("" = by route)
    remotes: frozenset[str] = frozenset()
    fdb: dict[tuple[int, str], str] = field(default_factory=dict)  # (vlan, mac) -> remote


@dataclass
class LocalState:
    tunnels: list[Tunnel] = field(default_factory=list)
    # vni -> (vlan, mac) -> IPs: MACs behind the local (non-tunnel) ports of the VNI's bridge
    macs: dict[int, dict[tuple[int, str], tuple[str, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class SetRemotes:
    bridge: str
    port: str
    remotes: tuple[str, ...]


@dataclass(frozen=True)
class AddFdb:
    bridge: str
    port: str
    vlan: int
    mac: str
    remote: str


@dataclass(frozen=True)
class DelFdb:
    bridge: str
    port: str
    vlan: int
    mac: str


Action = SetRemotes | AddFdb | DelFdb


def host_vtep(local: LocalState, vtep: str | None) -> str | None:
    """The host's VTEP: --vtep, else the first tunnel port's local address that is set."""
    if vtep:
        return vtep
    for t in sorted(local.tunnels, key=lambda t: (t.bridge, t.port)):
        if t.local:
            return t.local
    return None


def tunnel_vtep(t: Tunnel, vtep: str | None) -> str | None:
    return vtep or t.local or None


def desired_remotes(view: keys.ClusterView, t: Tunnel, me: str, my_vtep: str | None) -> set[str]:
    return {v for h, v in view.vteps.get(t.vni, {}).items() if h != me and v != my_vtep}


def desired_fdb(view: keys.ClusterView, t: Tunnel, me: str, local: LocalState,
                remotes: set[str]) -> dict[tuple[int, str], str]:
    """(vlan, mac) -> remote VTEP for the other hosts' MACs of the tunnel's VNI. A MAC that is
    local here stays local; a MAC published by several hosts goes to the newest record."""
    mine = local.macs.get(t.vni, {})
    out: dict[tuple[int, str], str] = {}
    for key, records in view.macs.get(t.vni, {}).items():
        if key in mine:
            continue
        others = [r for r in records if r.host != me and r.vtep in remotes]
        if others:
            out[key] = max(others, key=lambda r: (r.revision, r.host)).vtep
    return out


def program(view: keys.ClusterView, local: LocalState, me: str,
            vtep: str | None) -> list[Action]:
    """Actions that make the tunnel ports match the view: FDB deletions first, then the
    remotes, then FDB additions (an entry's remote is always one of the port's remotes)."""
    dels: list[Action] = []
    sets: list[Action] = []
    adds: list[Action] = []
    for t in sorted(local.tunnels, key=lambda t: (t.bridge, t.port)):
        my_vtep = tunnel_vtep(t, vtep)
        remotes = desired_remotes(view, t, me, my_vtep)
        fdb = desired_fdb(view, t, me, local, remotes)
        for (vlan, mac), remote in sorted(t.fdb.items()):
            if fdb.get((vlan, mac)) != remote:
                dels.append(DelFdb(t.bridge, t.port, vlan, mac))
        if set(t.remotes) != remotes:
            sets.append(SetRemotes(t.bridge, t.port, tuple(sorted(remotes))))
        for (vlan, mac), remote in sorted(fdb.items()):
            if t.fdb.get((vlan, mac)) != remote:
                adds.append(AddFdb(t.bridge, t.port, vlan, mac, remote))
    return dels + sets + adds


def publish(local: LocalState, me: str, vtep: str | None) -> dict[str, str]:
    """Every key (and value) this host must hold in etcd."""
    out: dict[str, str] = {}
    hv = host_vtep(local, vtep)
    if hv:
        out[keys.host_key(me)] = keys.vtep_value(hv)
    for t in local.tunnels:
        tv = tunnel_vtep(t, vtep)
        if not tv:
            continue
        out[keys.vtep_key(t.vni, me)] = keys.vtep_value(tv)
        for (vlan, mac), ips in local.macs.get(t.vni, {}).items():
            out[keys.mac_key(t.vni, me, vlan, mac)] = keys.mac_value(tv, ips)
    return out


def publish_diff(want: dict[str, str], mirror: dict[str, tuple[str, int]],
                 me: str) -> tuple[dict[str, str], list[str]]:
    """(keys to put, keys to delete) so that this host's keys in the mirror become WANT. Only
    what differs: a steady state writes nothing."""
    puts = {k: v for k, v in want.items() if mirror.get(k, ("", 0))[0] != v}
    dels = sorted(k for k in mirror if keys.host_of(k) == me and k not in want)
    return puts, dels
