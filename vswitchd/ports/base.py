"""The port driver interface: what one port type (veth, tap, system, ...) does, in the manner of
Open vSwitch's netdev providers. The switch does the rest the same way for every type: the
transaction, enslaving to the bridge, attaching to the datapath, the desired state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vswitchd.datapath import PortKind
from vswitchd.errors import AlreadyExists
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.seams import LinksApi, NetnsApi
from vswitchd.txn import Txn
from vswitchd.views import PortView


def refuse_existing(name: str, existing: LinkInfo | None) -> None:
    """A driver that makes its interface refuses a name the kernel already has."""
    if existing is not None:
        raise AlreadyExists(f"interface {name} already exists and is not managed by vswitchd")


# Operational states of an interface that is administratively up but carries nothing (a veth
# whose peer is down, a TAP no VM holds, a NIC without link): the port is "down".
NO_CARRIER = frozenset({"DOWN", "LOWERLAYERDOWN", "NOTPRESENT"})


@dataclass
class PortEnv:
    """What a driver may use: the kernel's links and namespaces, the bridge's MAC changes (which
    its datapath must follow) and who else uses a namespace."""

    links: LinksApi
    netns: NetnsApi
    set_bridge_mac: Callable[[Bridge, str, Txn], None]
    netns_users: Callable[[str, Port], list[Port]]  # ports in a netns, but the one given


class PortDriver:
    """One port type. Every hook but create has a default that does nothing."""

    type: str = ""
    dp_kind: PortKind = PortKind.DEVICE  # how the eBPF datapath sends to it
    link_kind = ""  # the kind of its interface (IFLA_INFO_KIND); "" = any (system: a NIC's)
    makes_link = True  # vswitchd makes the interface (and deletes it), or only enslaves it
    # PortSpec fields this type takes, beyond name, type and the VLAN settings (every type
    # takes those); a field set on a type that does not take it is refused, naming the types
    # that do.
    accepts: frozenset[str] = frozenset()
    # XDP (eBPF bridges; every type takes the xdp field): the mode a port gets when it asks for
    # none (auto, native, generic or off), and when the XDP programs may redirect frames to it
    # as XDP frames (vswitchd.switch.xdp): "never" (they reach it through TC), "always" (it
    # can receive them), "native" (while it got native XDP and is not a veth), "peer-napi"
    # (a veth: while it runs XDP itself and its peer has NAPI, which the daemon arranges then).
    xdp_default = "off"
    xdp_target = "never"

    def validate(self, spec: PortSpec) -> PortSpec:
        """The spec in canonical form, or InvalidArgument naming the field (the generic checks
        of vswitchd.ports.validate ran before)."""
        return spec

    def create(self, env: PortEnv, br: Bridge, port: Port, existing: LinkInfo | None,
               txn: Txn) -> Port:
        """Make (or check) the interface before it is enslaved to the bridge; every change
        goes through TXN. Returns the port with what the daemon did in its facts."""
        raise NotImplementedError

    def connected(self, env: PortEnv, br: Bridge, port: Port, txn: Txn) -> None:
        """After the port is enslaved and attached to the datapath."""

    def disconnect(self, env: PortEnv, br: Bridge, port: Port) -> None:
        """Before the port is detached: take back what connected() did, or raise (changing
        nothing) when that is impossible."""

    def destroy(self, env: PortEnv, br: Bridge, port: Port) -> None:
        """After the port is detached: remove what create() made (best effort, logged)."""

    def recreate(self, env: PortEnv, br: Bridge, port: Port) -> str | None:
        """The interface is missing after a restart or behind the daemon's back: make it again,
        or say why it stays missing."""
        return f"interface {port.name} is not present"

    def readopted(self, env: PortEnv, br: Bridge, port: Port) -> None:
        """After reconciliation re-enslaved and re-attached an existing or re-made port."""

    def vanished(self, env: PortEnv, port: Port) -> bool:
        """Is the port gone for good (its container went away), to be forgotten?"""
        return False

    def view(self, env: PortEnv, br: Bridge, port: Port, missing: str | None) -> PortView:
        """The port as reported: the desired state and the interface as it is now."""
        info = env.links.get(port.name)
        if info is None:
            state = f"missing: {missing or 'interface not present'}"
        else:
            state = "up" if info.up and info.operstate not in NO_CARRIER else "down"
        return PortView(spec=port.spec, bridge=br.name, ifindex=info.ifindex if info else 0,
                        state=state, facts=port.facts)
