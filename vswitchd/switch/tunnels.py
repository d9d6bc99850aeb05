"""Tunnel ports on bridges (the vxlan driver makes the device): one bridge per VNI on a host,
the remote VTEPs in the bridge's datapath, and the MTU a tunnel leaves to the bridge's other
ports (the underlay's, less the VXLAN header)."""

from __future__ import annotations

import logging
from dataclasses import replace

from vswitchd.datapath.constants import MAX_VTEPS
from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, clip
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.ports.vxlan import VXLAN_OVERHEAD, check_remotes, family, refuse_own
from vswitchd.switch.context import Context
from vswitchd.txn import Txn

log = logging.getLogger(__name__)

TUNNEL_TYPES = ("vxlan",)
# Port types whose MTU the daemon sets (both ends of a veth): a system port keeps the NIC's.
MTU_FOLLOWERS = ("veth", "tap")
DEFAULT_UNDERLAY_MTU = 1500


def check_count(remotes: list[str]) -> None:
    if len(remotes) > MAX_VTEPS:
        raise InvalidArgument("remotes", len(remotes),
                              f"a tunnel port has at most {MAX_VTEPS} remote VTEPs")


def tunnel_ports(br: Bridge) -> list[Port]:
    return [p for p in br.ports.values() if p.type in TUNNEL_TYPES]


class TunnelManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # ---- checks before a port is made -------------------------------------------------------

    def prepare(self, br: Bridge, spec: PortSpec) -> PortSpec:
        """SPEC as it will be made on BR: a tunnel's VNI unused and its MTU settled; another
        port's MTU within what the bridge's tunnels leave (the default when none is asked)."""
        if spec.type in TUNNEL_TYPES:
            return self._prepare_tunnel(br, spec)
        limit = self.mtu_limit(br)
        if limit is None or spec.type not in MTU_FOLLOWERS:
            return spec
        if spec.mtu > limit:
            raise InvalidArgument("mtu", spec.mtu, f"bridge {br.name} has a VXLAN tunnel port "
                                  f"that carries frames of at most {limit} bytes (the underlay's "
                                  "MTU less the VXLAN header)")
        return spec if spec.mtu else replace(spec, mtu=limit)

    def _prepare_tunnel(self, br: Bridge, spec: PortSpec) -> PortSpec:
        for other in self.ctx.bridges.values():
            for p in tunnel_ports(other):
                if p.spec.vni == spec.vni:
                    raise AlreadyExists(f"VNI {spec.vni} is already used by port {p.name} of "
                                        f"bridge {other.name}")
        if tunnel_ports(br):
            raise FailedPrecondition(f"bridge {br.name} already has a tunnel port "
                                     f"({tunnel_ports(br)[0].name}); one VNI per bridge")
        check_count(spec.remotes)
        mtu = self.underlay_mtu(spec) - VXLAN_OVERHEAD[family(spec)]
        if spec.mtu > mtu:
            raise InvalidArgument("mtu", spec.mtu, f"the underlay leaves at most {mtu} bytes for "
                                  "the frames a VXLAN tunnel carries")
        spec = replace(spec, mtu=spec.mtu or mtu)
        too_big = [f"{p.name} ({info.mtu})" for p in br.ports.values()
                   if p.type in MTU_FOLLOWERS and (info := self.ctx.links.get(p.name)) is not None
                   and info.mtu > spec.mtu]
        if too_big:
            raise FailedPrecondition(
                f"ports of bridge {br.name} have an MTU above the {spec.mtu} bytes the tunnel "
                f"carries: {', '.join(too_big)}; add the tunnel port before them (they then get "
                f"MTU {spec.mtu}), or re-add them with --mtu {spec.mtu}")
        return spec

    def underlay_mtu(self, spec: PortSpec) -> int:
        address = spec.local or (spec.remotes[0] if spec.remotes else "")
        return self.ctx.links.underlay_mtu(address) if address else DEFAULT_UNDERLAY_MTU

    def mtu_limit(self, br: Bridge) -> int | None:
        """The largest frame the bridge's tunnels carry, None without a tunnel."""
        mtus = [p.spec.mtu for p in tunnel_ports(br)]
        return min(mtus) if mtus else None

    # ---- the datapath's part ----------------------------------------------------------------

    def connect(self, br: Bridge, port: Port, txn: Txn) -> None:
        """After the tunnel port is attached: its VNI, local address and VTEPs into the
        datapath."""
        s = port.spec
        backend = self.ctx.backend(br)
        txn.step(f"set tunnel {port.name} (VNI {s.vni}, {len(s.remotes)} remote VTEPs)",
                 lambda: backend.set_tunnel(br.name, port.name, s.vni, s.local, s.remotes),
                 lambda: None)  # detach_port removes it with the port

    def restore(self, br: Bridge, port: Port) -> None:
        s = port.spec
        self.ctx.backend(br).set_tunnel(br.name, port.name, s.vni, s.local, s.remotes)

    # ---- remote VTEPs -----------------------------------------------------------------------

    def tunnel(self, br: Bridge, name: str) -> Port:
        port = self.ctx.port(br, name)
        if port.type not in TUNNEL_TYPES:
            raise FailedPrecondition(f"port {name} of bridge {br.name} is a {port.type} port, "
                                     "not a tunnel port")
        return port

    def set_remotes(self, br: Bridge, port: Port, remotes: list[str], txn: Txn) -> None:
        """Make the tunnel's remote VTEPs exactly REMOTES (checked as the API's `remotes`)."""
        old = port.spec
        remotes = check_remotes(remotes, old)
        check_count(remotes)
        refuse_own(self.ctx.links, remotes, "remotes")
        if remotes == old.remotes:
            return
        new = replace(old, remotes=remotes)
        backend = self.ctx.backend(br)
        txn.step(f"set the remote VTEPs of {port.name}",
                 lambda: backend.set_vteps(br.name, port.name, remotes),
                 lambda: backend.set_vteps(br.name, port.name, old.remotes))
        txn.step("update the port spec", lambda: setattr(port, "spec", new),
                 lambda: setattr(port, "spec", old))
        log.info("tunnel %s of bridge %s: remote VTEPs %s", port.name, br.name,
                 ", ".join(remotes) or "none")

    def add_vtep(self, br: Bridge, name: str, address: str, may_exist: bool,
                 txn: Txn) -> tuple[Port, str]:
        """(the tunnel port, the VTEP's address in canonical form)."""
        port = self.tunnel(br, name)
        canonical = check_remotes([address], port.spec, "address")[0]
        if canonical in port.spec.remotes:
            if may_exist:
                return port, canonical
            raise AlreadyExists(f"{canonical} is already a remote VTEP of {name} "
                                "(--may-exist ignores this)")
        try:
            self.set_remotes(br, port, [*port.spec.remotes, canonical], txn)
        except InvalidArgument as exc:
            raise InvalidArgument("address", address, exc.problem) from None
        return port, canonical

    def delete_vtep(self, br: Bridge, name: str, address: str, if_exists: bool,
                    txn: Txn) -> bool:
        port = self.tunnel(br, name)
        canonical = check_remotes([address], replace(port.spec, local=""), "address")[0]
        if canonical not in port.spec.remotes:
            if if_exists:
                return False
            raise NotFound(f"{clip(address)} is not a remote VTEP of {name} "
                           "(--if-exists ignores this)")
        self.set_remotes(br, port, [r for r in port.spec.remotes if r != canonical], txn)
        return True

    def list_vteps(self, bridge: str = "", port: str = "") -> list[tuple[Bridge, Port, str]]:
        if port and not bridge:
            raise InvalidArgument("port", port, "needs its bridge")
        bridges = [self.ctx.bridge(bridge)] if bridge else sorted(
            self.ctx.bridges.values(), key=lambda b: b.name)
        out: list[tuple[Bridge, Port, str]] = []
        for br in bridges:
            for p in ([self.tunnel(br, port)] if port else tunnel_ports(br)):
                out.extend((br, p, r) for r in p.spec.remotes)
        return out
