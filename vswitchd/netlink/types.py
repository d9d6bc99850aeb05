"""What the kernel reports about links, as plain values (no pyroute2 needed to use them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LinkInfo:
    name: str
    ifindex: int
    kind: str  # 'bridge', 'veth', 'tun', 'dummy', ... ('' for plain NICs)
    master: int | None
    mac: str
    mtu: int
    up: bool  # administratively up (IFF_UP)
    operstate: str  # 'UP', 'DOWN', 'UNKNOWN', 'LOWERLAYERDOWN', ...
    # the XDP programs the kernel runs on it: (mode, program id) per mode attached, from
    # IFLA_XDP ("native", "generic", "offload")
    xdp_progs: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class LinkStats:
    rx_packets: int
    rx_bytes: int
    tx_packets: int
    tx_bytes: int
    rx_dropped: int
    tx_dropped: int


@dataclass(frozen=True)
class FdbRecord:
    """An FDB entry as a bridge's datapath reports it (the kernel bridge's, or the eBPF maps')."""

    mac: str
    vlan: int
    ifindex: int
    static: bool
    age_seconds: float  # 0.0 for static entries
    remote: str = ""  # a tunnel port's entry: the remote VTEP the MAC is behind


@dataclass(frozen=True)
class Route:
    """A route of the main table that leaves by one interface."""

    dst: str          # CIDR; 0.0.0.0/0 or ::/0 for a default route
    gateway: str      # "" for an on-link route
    metric: int


@dataclass(frozen=True)
class L3Config:
    """What an uplink NIC carries for the host: addresses and the routes through it."""

    addresses: tuple[str, ...]
    routes: tuple[Route, ...]


@dataclass(frozen=True)
class VxlanInfo:
    """What the kernel says about a VXLAN device."""

    name: str
    ifindex: int
    vni: int          # the VNI of a classic device; 0 for an external one (see its VNI filter)
    external: bool    # collect_md (the eBPF datapath sets the tunnel key)
    vnifilter: bool   # an external device that terminates only the VNIs of its filter
    dstport: int      # UDP port
    local: str        # source address, "" when unset
    learning: bool
    up: bool
