"""System ports: an existing interface (a NIC) enslaved to the bridge, and given back as it was.

An uplink (--uplink) also carries the host's connectivity: its IPv4/IPv6 addresses and routes
move to the bridge, and the bridge wears the NIC's MAC (the LAN's neighbour caches stay valid),
right after enslaving so the host's gap stays short; del-port moves them back and restores the
bridge's own MAC (the one in its facts; ports of stores written before bridges had one remember
it as bridge_mac)."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

from vswitchd.errors import FailedPrecondition, InvalidArgument, NotFound, SwitchError
from vswitchd.model import Bridge, Port, PortFacts
from vswitchd.netlink.types import L3Config, LinkInfo, Route
from vswitchd.ports.base import PortDriver, PortEnv
from vswitchd.txn import NoUndo, Txn

log = logging.getLogger(__name__)


def _stored_l3(facts: PortFacts) -> L3Config:
    return L3Config(tuple(facts.uplink_addresses),
                    tuple(Route(**r) for r in facts.uplink_routes))


def _link(env: PortEnv, name: str) -> LinkInfo:
    info = env.links.get(name)
    if info is None:
        raise FailedPrecondition(f"interface {name} is missing from the kernel")
    return info


class SystemDriver(PortDriver):
    type = "system"
    makes_link = False
    accepts = frozenset({"uplink"})
    xdp_default = "auto"
    xdp_target = "native"

    def create(self, env: PortEnv, br: Bridge, port: Port, existing: LinkInfo | None,
               txn: Txn) -> Port:
        name = port.name
        if existing is None:
            raise NotFound(f"interface {name} does not exist (a system port must exist already)")
        if existing.ifindex == 1 or name == "lo":
            raise InvalidArgument("port", name, "the loopback device cannot be a port")
        if existing.kind == "bridge":
            raise InvalidArgument("port", name, "is a bridge; bridges cannot be enslaved")
        if existing.master:
            master = env.links.get_by_index(existing.master)
            raise FailedPrecondition(
                f"interface {name} is already enslaved to "
                f"{master.name if master else existing.master}")
        if not port.spec.uplink:
            return port
        other = next((p.name for p in br.ports.values() if p.spec.uplink), None)
        if other is not None:
            raise FailedPrecondition(
                f"bridge {br.name} already has an uplink ({other}); delete it first")
        # Before the NIC is enslaved: read its L3 config and give the bridge its MAC; the port
        # remembers both and the bridge's own MAC.
        l3 = env.links.l3_config(name)
        bridge_mac = br.facts.mac or _link(env, br.name).mac
        env.set_bridge_mac(br, existing.mac, txn)
        return Port(port.spec, replace(port.facts, uplink_addresses=list(l3.addresses),
                                       uplink_routes=[asdict(r) for r in l3.routes],
                                       bridge_mac=bridge_mac))

    def connected(self, env: PortEnv, br: Bridge, port: Port, txn: Txn) -> None:
        if port.spec.uplink:
            l3 = _stored_l3(port.facts)
            txn.step(f"move L3 config of {port.name} to {br.name}",
                     lambda: env.links.move_l3(l3, port.name, br.name),
                     lambda: env.links.move_l3(l3, br.name, port.name))

    def disconnect(self, env: PortEnv, br: Bridge, port: Port) -> None:
        if not port.spec.uplink:
            return
        if env.links.get(port.name) is None or env.links.get(br.name) is None:
            return
        env.links.move_l3(_stored_l3(port.facts), br.name, port.name)

    def destroy(self, env: PortEnv, br: Bridge, port: Port) -> None:
        if env.links.get(port.name) is None:
            return
        env.links.release(port.name)
        own = br.facts.mac or port.facts.bridge_mac
        if port.spec.uplink and own and env.links.get(br.name) is not None:
            try:
                env.set_bridge_mac(br, own, NoUndo())
            except SwitchError as exc:
                log.error("bridge %s: own MAC %s not restored: %s", br.name, own, exc)

    def recreate(self, env: PortEnv, br: Bridge, port: Port) -> str | None:
        return f"system interface {port.name} is not present"

    def readopted(self, env: PortEnv, br: Bridge, port: Port) -> None:
        """After a restart: the bridge wears the NIC's MAC, the stored L3 config (and whatever
        the NIC got meanwhile) is on the bridge."""
        if not port.spec.uplink:
            return
        current = env.links.l3_config(port.name)  # normally nothing: it is on the bridge
        stored = _stored_l3(port.facts)
        merged = L3Config(
            stored.addresses + tuple(a for a in current.addresses if a not in stored.addresses),
            stored.routes + tuple(r for r in current.routes if r not in stored.routes))
        bridge_mac = br.facts.mac or _link(env, br.name).mac
        env.set_bridge_mac(br, _link(env, port.name).mac, NoUndo())
        # the stored addresses are on the bridge already (the bridge's reconciliation); routes
        # that went with a re-created bridge come back, and what the NIC got meanwhile moves
        env.links.move_l3(L3Config(current.addresses, merged.routes), port.name, br.name)
        port.facts = replace(port.facts, uplink_addresses=list(merged.addresses),
                             uplink_routes=[asdict(r) for r in merged.routes],
                             bridge_mac=port.facts.bridge_mac or bridge_mac)


DRIVER = SystemDriver()
