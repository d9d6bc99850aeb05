"""Bridges: the Linux bridge device, its addresses, its datapath and its NAT rule."""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable

from vswitchd import validate
from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, SwitchError
from vswitchd.model import DATAPATHS, Bridge, BridgeFacts, BridgeSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.seams import NatApi
from vswitchd.switch.addresses import bridge_addresses, check_overlap
from vswitchd.switch.context import Context
from vswitchd.switch.ports import PortManager
from vswitchd.txn import NoUndo, Txn
from vswitchd.views import BridgeView

log = logging.getLogger(__name__)


def new_mac() -> str:
    """A random locally administered unicast MAC: a bridge's own."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{o:02x}" for o in octets)


def adopt_mac(br: Bridge, info: LinkInfo | None) -> None:
    """A MAC of its own for a bridge from a store written before bridges had one: the one an
    uplink remembers (the device wears the NIC's), else the device's, else a new one."""
    uplink = next((p.facts.bridge_mac for p in br.ports.values()
                   if p.spec.uplink and p.facts.bridge_mac), "")
    mac = uplink or (info.mac if info is not None else "")
    if not mac or mac == "00:00:00:00:00:00" or int(mac[:2], 16) & 1:
        mac = new_mac()
    br.facts.mac = mac
    log.info("bridge %s: its own MAC is %s from now on", br.name, mac)


def nat_subnet(addresses: list[str]) -> str:
    """The one IPv4 subnet a --nat bridge masquerades."""
    nets = [ipaddress.ip_interface(a).network for a in addresses
            if ipaddress.ip_interface(a).version == 4]
    if not nets:
        raise InvalidArgument("nat", True, "needs an IPv4 address on the bridge (--ip CIDR)")
    if len(nets) > 1:
        raise InvalidArgument("nat", True, "masquerades one IPv4 subnet: give the bridge one "
                              f"IPv4 address, not {len(nets)}")
    return str(nets[0])


class BridgeManager:
    def __init__(self, ctx: Context, ports: PortManager, nat: Callable[[], NatApi]) -> None:
        self.ctx = ctx
        self.ports = ports
        self.nat = nat  # made on first use (needs libnftables)

    def validate(self, spec: BridgeSpec) -> BridgeSpec:
        validate.ifname(spec.name, "bridge")
        datapath = spec.datapath or self.ctx.cfg.default_datapath
        if datapath not in DATAPATHS:
            raise InvalidArgument("datapath", datapath, f"must be one of {', '.join(DATAPATHS)}")
        addresses = validate.distinct_addresses([validate.cidr(a, "ip") for a in spec.addresses])
        if spec.nat:
            nat_subnet(addresses)
        return BridgeSpec(name=spec.name, datapath=datapath, addresses=addresses, nat=spec.nat)

    def create(self, spec: BridgeSpec, may_exist: bool, txn: Txn) -> BridgeView:
        ctx = self.ctx
        name = spec.name
        if name in ctx.bridges:
            if may_exist:
                return self.view(ctx.bridges[name])
            raise AlreadyExists(f"bridge {name} already exists (--may-exist ignores this)")
        if ctx.port_owner(name) or ctx.links.get(name) is not None:
            raise AlreadyExists(
                f"interface {name} already exists and is not a bridge managed by vswitchd")
        check_overlap(ctx.bridges.values(), name, spec.addresses)
        br = Bridge(spec, facts=BridgeFacts(mac=new_mac()))
        backend = ctx.backend(br)
        backend.require()
        nat = self.nat() if spec.nat else None
        txn.step(f"create bridge {name}",
                 lambda: ctx.links.create_bridge(name, spec.addresses, mac=br.facts.mac),
                 lambda: ctx.links.delete(name))
        txn.step("attach the bridge to its datapath", lambda: backend.add_bridge(name),
                 lambda: backend.remove_bridge(br))
        if nat is not None:
            self.enable_nat(nat, br, txn)
        txn.step(f"add bridge {name} to the desired state",
                 lambda: ctx.bridges.__setitem__(name, br), lambda: ctx.bridges.pop(name, None))
        log.info("bridge %s created (datapath %s)", name, spec.datapath)
        return self.view(br)

    def delete(self, br: Bridge) -> None:
        """Take the bridge and all it holds out of the kernel and the desired state (best
        effort, logged; an uplink that cannot give the host its addresses back raises first)."""
        ctx = self.ctx
        for port in [p for p in br.ports.values() if p.spec.uplink]:
            # first: the host's addresses go back, and the NIC leaves the datapath right away
            self.ports.remove(br, port)
        if br.spec.nat:
            try:
                self.nat().remove(br.name)
            except SwitchError as exc:
                log.error("bridge %s: NAT rule not removed: %s", br.name, exc)
        with ctx.links.deleting_together():  # one kernel operation for all the ports' links
            for port in list(br.ports.values()):
                self.ports.remove(br, port, bridge_going=True)
        ctx.backend(br).remove_bridge(br)
        ctx.links.delete(br.name)
        del ctx.bridges[br.name]
        ctx.missing.pop(br.name, None)
        log.info("bridge %s deleted", br.name)

    def set_nat(self, br: Bridge, nat: bool, txn: Txn) -> None:
        if nat == br.spec.nat:
            return
        impl = self.nat()
        if nat:
            self.enable_nat(impl, br, txn)
        else:
            subnet = nat_subnet(br.spec.addresses)
            txn.step(f"remove NAT rule of {br.name}", lambda: impl.remove(br.name),
                     lambda: impl.masquerade(br.name, subnet))
        txn.step("set the nat flag", lambda: setattr(br.spec, "nat", nat),
                 lambda: setattr(br.spec, "nat", not nat))
        log.info("bridge %s: NAT %s", br.name, "on" if nat else "off")

    def set_addresses(self, br: Bridge, addresses: list[str], txn: Txn) -> None:
        """Replace the bridge's own addresses (an uplink's stay); a NAT bridge's rule follows
        its new IPv4 subnet."""
        addresses = validate.distinct_addresses([validate.cidr(a, "ip") for a in addresses])
        old = list(br.spec.addresses)
        if addresses == old:
            return
        ctx = self.ctx
        check_overlap(ctx.bridges.values(), br.name, addresses)
        uplink = [a for a in bridge_addresses(br) if a not in old]
        validate.distinct_addresses(addresses + uplink)  # not one the uplink brought
        held = {ipaddress.ip_interface(a).ip: p.name for p in br.ports.values()
                for a in p.spec.addresses}
        for cidr in addresses:
            port = held.get(ipaddress.ip_interface(cidr).ip)
            if port is not None:
                raise InvalidArgument("ip", cidr, f"is already the address of port {port} of "
                                      f"bridge {br.name}")
        if br.spec.nat:
            new_subnet, old_subnet = nat_subnet(addresses), nat_subnet(old)
        txn.step(f"set the addresses of bridge {br.name}",
                 lambda: ctx.links.set_addresses(br.name, addresses + uplink),
                 lambda: ctx.links.set_addresses(br.name, old + uplink))
        if br.spec.nat and new_subnet != old_subnet:
            impl = self.nat()
            txn.step(f"masquerade {new_subnet} for {br.name}",
                     lambda: impl.masquerade(br.name, new_subnet),
                     lambda: impl.masquerade(br.name, old_subnet))
        txn.step("set the bridge's addresses", lambda: setattr(br.spec, "addresses", addresses),
                 lambda: setattr(br.spec, "addresses", old))
        log.info("bridge %s: addresses %s", br.name, ", ".join(addresses) or "none")

    def enable_nat(self, nat: NatApi, br: Bridge, txn: Txn) -> None:
        subnet = nat_subnet(br.spec.addresses)
        if nat.enable_ip_forwarding():  # False: it was on already, nothing to undo
            log.info("IPv4 forwarding enabled for NAT on bridge %s", br.name)
            txn.on_undo("disable IPv4 forwarding", nat.disable_ip_forwarding)
        txn.step(f"add NAT rule of {br.name}", lambda: nat.masquerade(br.name, subnet),
                 lambda: nat.remove(br.name))

    def restore(self, br: Bridge) -> set[int]:
        """Make the kernel hold the bridge as stored (after a start, or when it vanished),
        re-made with its own MAC (keep_mac puts it back on one that exists); its ports, FDB and
        flows are the reconciler's. The ifindexes it keeps."""
        ctx = self.ctx
        info = ctx.links.get(br.name)
        if info is not None and info.kind != "bridge":
            raise FailedPrecondition(f"interface {br.name} exists but is a {info.kind or 'nic'}")
        if not br.facts.mac:
            adopt_mac(br, info)
        if info is None:
            info = ctx.links.create_bridge(br.name, br.spec.addresses, mac=br.facts.mac)
            log.info("bridge %s re-created", br.name)
        else:
            ctx.links.set_addresses(br.name, bridge_addresses(br))
            ctx.links.set_up(br.name)
        backend = ctx.backend(br)
        backend.require()
        backend.add_bridge(br.name)
        return {info.ifindex}

    def keep_mac(self, br: Bridge) -> None:
        """The bridge wears its own MAC, set explicitly so that the kernel keeps it when ports
        come and go; a MAC that drifted is put back. Not while it has an uplink: then it
        wears the NIC's (the uplink's driver sees to it)."""
        if any(p.spec.uplink for p in br.ports.values()):
            return
        ctx = self.ctx
        current = ctx.link(br.name).mac
        if current == br.facts.mac:
            ctx.links.set_mac(br.name, current)  # set even when equal: then the kernel keeps it
        else:
            log.warning("bridge %s: its MAC is %s; setting its own %s back", br.name, current,
                        br.facts.mac)
            ctx.set_bridge_mac(br, br.facts.mac, NoUndo())

    def restore_nat(self, br: Bridge) -> None:
        if not br.spec.nat:
            return
        try:
            self.enable_nat(self.nat(), br, NoUndo())
        except SwitchError as exc:
            log.error("NAT of bridge %s not restored: %s", br.name, exc)

    def view(self, br: Bridge) -> BridgeView:
        info = self.ctx.links.get(br.name)
        return BridgeView(spec=br.spec, ifindex=info.ifindex if info else 0,
                          mac=info.mac if info else "", ports=self.ports.views(br),
                          revision=br.facts.revision)
