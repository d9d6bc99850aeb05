"""Ports on bridges: what every port type shares (enslaving, attaching to the bridge's datapath,
VLAN settings, XDP (vswitchd.switch.xdp), counters, the desired state); the type's own part is
its driver's (vswitchd.ports)."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from vswitchd import ports as port_types
from vswitchd import validate
from vswitchd.datapath import VlanConfig
from vswitchd.errors import AlreadyExists, InvalidArgument, NotFound, clip
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.switch.addresses import check_overlap, check_unused
from vswitchd.switch.context import Context
from vswitchd.switch.tunnels import TUNNEL_TYPES, TunnelManager
from vswitchd.switch.xdp import XdpManager
from vswitchd.txn import Txn
from vswitchd.views import PortView, StatsView

log = logging.getLogger(__name__)

UPDATABLE = ("vlan", "trunks", "native_vlan", "xdp", "remotes")


def vlan_config(spec: PortSpec) -> VlanConfig:
    return VlanConfig(access=spec.vlan, trunks=frozenset(spec.trunks), native=spec.native_vlan)


class PortManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.env = ctx.port_env()
        self.xdp = XdpManager(ctx)
        self.tunnels = TunnelManager(ctx)

    @staticmethod
    def validate(bridge: str, spec: PortSpec) -> PortSpec:
        validate.ifname(bridge, "bridge")
        return port_types.validate(spec)

    def create(self, bridge: str, spec: PortSpec, may_exist: bool, txn: Txn) -> PortView:
        ctx = self.ctx
        br = ctx.bridge(bridge)
        owner = ctx.port_owner(spec.name)
        if owner is not None:
            if owner is br and may_exist:
                return self.view(br, br.ports[spec.name])
            raise AlreadyExists(f"port {spec.name} already exists on bridge {owner.name}"
                                + (" (--may-exist ignores this)" if owner is br else ""))
        if spec.name in ctx.bridges:
            raise AlreadyExists(f"{spec.name} is a bridge managed by vswitchd")
        check_unused(br, spec.addresses)
        check_overlap(ctx.bridges.values(), br.name, spec.addresses)
        spec = self.tunnels.prepare(br, spec)
        existing = ctx.links.get(spec.name)
        backend = ctx.backend(br)
        backend.check_vlans(br.name, spec)
        backend.check_xdp(br.name, spec)
        backend.require()
        drv = port_types.driver(spec.type)
        port = drv.create(self.env, br, Port(spec), existing, txn)
        name = port.name
        txn.step(f"enslave {name} to {br.name}", lambda: ctx.links.enslave(name, br.name),
                 lambda: ctx.links.release(name))
        txn.step(f"attach {name} to the datapath",
                 lambda: backend.attach_port(br.name, name, drv.dp_kind, vlan_config(spec)),
                 lambda: backend.detach_port(br.name, name))
        if spec.type in TUNNEL_TYPES:
            self.tunnels.connect(br, port, txn)
        xdp = self.xdp.attach(br, port, txn)
        drv.connected(self.env, br, port, txn)
        txn.step(f"add port {name} to the desired state",
                 lambda: br.ports.__setitem__(name, port), lambda: br.ports.pop(name, None))
        self.xdp.arrange(br, txn, only=port)  # its target and peer
        ctx.missing.pop(name, None)
        log.info("port %s (%s%s, vlan %s, xdp %s) added to bridge %s", name, spec.type,
                 " uplink" if spec.uplink else "", spec.vlan_mode(), xdp.mode, br.name)
        return self.view(br, port)

    def remove(self, br: Bridge, port: Port, bridge_going: bool = False) -> None:
        """Remove everything vswitchd created for a port (best effort, logged; an uplink whose
        addresses cannot go back to the NIC raises first, changing nothing). The bridge's
        other ports follow (the last XDP port gone: their peers' GRO off again), unless
        bridge_going: the whole bridge goes, and its backend's remove_bridge detaches every
        port from the datapath at once, after their devices are gone (a detach of a live
        device waits for an RCU grace period)."""
        drv = self.ctx.driver(port)
        drv.disconnect(self.env, br, port)
        self.xdp.forget(br, port, datapath=not bridge_going)
        if not bridge_going:
            self.ctx.backend(br).detach_port(br.name, port.name)
        drv.destroy(self.env, br, port)
        br.fdb = [f for f in br.fdb if f.port != port.name]
        br.ports.pop(port.name, None)
        self.ctx.missing.pop(port.name, None)
        if not bridge_going:
            self.xdp.settle(br)

    def update(self, br: Bridge, name: str, changes: dict[str, object], txn: Txn) -> PortView:
        """Change a port's VLAN settings (validated as a whole), XDP mode and (a tunnel's)
        remote VTEPs at run time."""
        port = self.ctx.port(br, name)
        if "remotes" in changes:
            changes = dict(changes)
            remotes = changes.pop("remotes")
            if not isinstance(remotes, list):
                raise InvalidArgument("remotes", remotes, "must be a list of addresses")
            self.tunnels.set_remotes(br, self.tunnels.tunnel(br, name), remotes, txn)
        spec = port.spec
        merged: dict[str, Any] = {"vlan": spec.vlan, "trunks": spec.trunks,
                                  "native_vlan": spec.native_vlan, "xdp": spec.xdp, **changes}
        vlan, trunks, native = validate.vlan_mode(merged["vlan"], merged["trunks"],
                                                  merged["native_vlan"])
        xdp = validate.xdp_mode(merged["xdp"])
        new = replace(spec, vlan=vlan, trunks=trunks, native_vlan=native, xdp=xdp)
        if new == spec:
            return self.view(br, port)
        backend = self.ctx.backend(br)
        backend.check_vlans(br.name, new)
        backend.check_xdp(br.name, new)
        if new.vlan_mode() != spec.vlan_mode():
            txn.step(f"set VLAN settings of {name}",
                     lambda: backend.set_port_vlan(br.name, name, vlan_config(new)),
                     lambda: backend.set_port_vlan(br.name, name, vlan_config(spec)))
            log.info("port %s of bridge %s: VLAN %s -> %s", name, br.name, spec.vlan_mode(),
                     new.vlan_mode())
        if new.xdp != spec.xdp:
            self.xdp.change(br, port, new, txn)
            self.xdp.arrange(br, txn, only=port)
            log.info("port %s of bridge %s: XDP %s -> %s", name, br.name,
                     spec.xdp or "default", new.xdp or "default")
        txn.step("update the port spec", lambda: setattr(port, "spec", new),
                 lambda: setattr(port, "spec", spec))
        return self.view(br, port)

    @staticmethod
    def check_changes(changes: dict[str, object]) -> None:
        unknown = sorted(set(changes) - set(UPDATABLE))
        if unknown:
            raise InvalidArgument("update_mask", ",".join(unknown),
                                  "only vlan, trunks, native_vlan, xdp and remotes can be "
                                  "changed")

    def restore(self, br: Bridge, port: Port) -> LinkInfo | None:
        """Make the kernel and the datapath hold the port as stored: re-make a missing
        interface, re-enslave and re-attach it. None when it stays missing (ctx.missing says
        why)."""
        ctx = self.ctx
        drv = ctx.driver(port)
        info = ctx.links.get(port.name)
        if info is None:
            why = drv.recreate(self.env, br, port)
            if why is not None:
                ctx.missing[port.name] = why
                log.warning("port %s: %s", port.name, why)
                return None
            log.info("port %s re-created", port.name)
            info = ctx.link(port.name)
        if info.master != ctx.link(br.name).ifindex:
            ctx.links.enslave(port.name, br.name)
        ctx.backend(br).attach_port(br.name, port.name, drv.dp_kind, vlan_config(port.spec))
        if port.type in TUNNEL_TYPES:
            self.tunnels.restore(br, port)
        self.xdp.restore(br, port)
        drv.readopted(self.env, br, port)
        ctx.missing.pop(port.name, None)
        return info

    def vanished(self, port: Port) -> bool:
        return self.ctx.driver(port).vanished(self.env, port)

    def view(self, br: Bridge, port: Port) -> PortView:
        view = self.ctx.driver(port).view(self.env, br, port, self.ctx.missing.get(port.name))
        return self.xdp.view(br, port, view)

    def views(self, br: Bridge) -> list[PortView]:
        return [self.view(br, p) for p in sorted(br.ports.values(), key=lambda p: p.name)]

    def stats(self, br: Bridge, port: str = "") -> list[StatsView]:
        if port and port != br.name and port not in br.ports:
            raise NotFound(f"port {clip(port)} does not exist on bridge {br.name}")
        backend = self.ctx.backend(br)
        return [backend.port_stats(name) for name in ([port] if port
                                                      else [br.name, *sorted(br.ports)])
                if self.ctx.links.get(name) is not None]
