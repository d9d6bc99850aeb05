"""What the switch's managers work on: the desired state (bridges by name), what is missing in
the kernel and why, and the seams to the system (links, namespaces, interface offloads, backends
per datapath)."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

from vswitchd.backends import Backend, Backends
from vswitchd.config import Config
from vswitchd.datapath import FlowCounters
from vswitchd.errors import FailedPrecondition, NotFound, clip
from vswitchd.events import EventLog
from vswitchd.flows.model import Clock, Rule
from vswitchd.model import Bridge, Port
from vswitchd.netlink import ethtool as system_ethtool
from vswitchd.netlink.types import LinkInfo
from vswitchd.ports import PortDriver, PortEnv, driver
from vswitchd.seams import EthtoolApi, LinksApi, NetnsApi
from vswitchd.txn import Txn


@dataclass
class FlowChange:
    """Rules a change removed from and added to a bridge's table, for the events. reasons:
    rule_id -> why a rule was removed ("idle-timeout", "hard-timeout"; default "deleted", or
    "replaced" when an added rule took its priority and match)."""

    bridge: str
    removed: list[Rule]
    added: list[Rule]
    reasons: dict[int, str] | None = None
    counters: dict[int, FlowCounters] | None = None  # the removed rules' final counters


@dataclass
class Context:
    cfg: Config
    links: LinksApi
    netns: NetnsApi
    backends: Backends
    clock: Clock
    bridges: dict[str, Bridge] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # port or bridge name -> why
    ethtool: EthtoolApi = system_ethtool
    events: EventLog = field(default_factory=EventLog)  # revisions and the change events
    flow_changes: list[FlowChange] = field(default_factory=list)  # not yet published

    def bridge(self, name: str) -> Bridge:
        try:
            return self.bridges[name]
        except KeyError:
            raise NotFound(f"bridge {clip(name)} does not exist") from None

    def port(self, br: Bridge, name: str) -> Port:
        try:
            return br.ports[name]
        except KeyError:
            raise NotFound(f"port {clip(name)} does not exist on bridge {br.name}") from None

    def link(self, name: str) -> LinkInfo:
        info = self.links.get(name)
        if info is None:
            raise FailedPrecondition(f"interface {name} is missing from the kernel")
        return info

    def port_owner(self, port: str) -> Bridge | None:
        for br in self.bridges.values():
            if port in br.ports:
                return br
        return None

    def owned_links(self, names: Collection[str] | None = None
                    ) -> dict[str, tuple[str, str | None]]:
        """{ifname: (kind, bridge it belongs to)} of the interfaces vswitchd owns; NAMES: of
        those only (a burst of link messages is about a few: no walk over every port)."""
        out: dict[str, tuple[str, str | None]] = {
            name: ("bridge", None) for name in self.bridges if names is None or name in names}
        for br, p in self.ports_named(names):
            out[p.name] = (p.type, br.name)
        return out

    def ports_named(self, names: Collection[str] | None = None) -> Iterator[tuple[Bridge, Port]]:
        """(bridge, port) of every port, or of the ports of NAMES (looked up, not walked)."""
        for br in self.bridges.values():
            if names is None:
                for port in br.ports.values():
                    yield br, port
                continue
            for name in sorted(names):
                found = br.ports.get(name)
                if found is not None:
                    yield br, found

    def flood_sync_once(self) -> contextlib.AbstractContextManager[None]:
        """Within it, the eBPF datapath syncs a bridge's XDP flood groups once, on the way out,
        however many of its ports change (a sync reads every member: an add-port made
        three)."""
        dp = self.backends.datapath
        return dp.deferred_flood_sync() if dp is not None else contextlib.nullcontext()

    def backend(self, br: Bridge) -> Backend:
        return self.backends.of(br.datapath)

    def driver(self, port: Port) -> PortDriver:
        return driver(port.type)

    def port_names(self, br: Bridge) -> dict[int, str]:
        """ifindex -> name of the bridge device and its ports present in the kernel."""
        names = {}
        for name in (br.name, *br.ports):
            info = self.links.get(name)
            if info is not None:
                names[info.ifindex] = name
        return names

    def netns_users(self, ref: str, but: Port) -> list[Port]:
        return [p for b in self.bridges.values() for p in b.ports.values()
                if p.spec.netns == ref and p is not but]

    def set_bridge_mac(self, br: Bridge, mac: str, txn: Txn) -> None:
        """The bridge device's MAC, and the datapath's entry for the host's port, become MAC."""
        old = self.link(br.name).mac
        if old == mac:
            return
        txn.step(f"set MAC of {br.name}", lambda: self.links.set_mac(br.name, mac),
                 lambda: self.links.set_mac(br.name, old))
        backend = self.backend(br)
        txn.step("follow the bridge's MAC in the datapath",
                 lambda: backend.bridge_mac_changed(br.name, old, mac),
                 lambda: backend.bridge_mac_changed(br.name, mac, old))

    def port_env(self) -> PortEnv:
        return PortEnv(self.links, self.netns, self.set_bridge_mac, self.netns_users)
