"""VXLAN tunnel ports: a VXLAN device vswitchd creates and owns, one per bridge and VNI.

On an eBPF bridge it is an external (collect_md) device with a VNI filter: one device serves
every remote host of the VNI, the datapath sets the tunnel key of each frame it sends (the
remote VTEP from the FDB, or every VTEP for a flood) and reads it from each frame received. On
a kernel bridge it is a classic device of that VNI whose kernel FDB holds the remote VTEPs
(all-zero entries: head-end replication) and the static remote MACs.

What the bridge does with a tunnel port beyond the device (its VTEPs in the datapath, the MTU
left to the other ports, the VNI used once per host) is vswitchd.switch.tunnels'.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from vswitchd import validate as values
from vswitchd.datapath import PortKind
from vswitchd.errors import InvalidArgument
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.ports.base import PortDriver, PortEnv, refuse_existing
from vswitchd.seams import LinksApi
from vswitchd.txn import Txn

VXLAN_PORT = 4789          # IANA's VXLAN port, the default
VXLAN_OVERHEAD = {4: 50, 6: 70}  # outer Ethernet is not counted: IP + UDP + VXLAN + inner Ethernet


def family(spec: PortSpec) -> int:
    """The underlay's IP version (4 unless the local address or a remote says 6)."""
    for address in (spec.local, *spec.remotes):
        if address:
            return ipaddress.ip_address(address).version
    return 4


def check_remotes(remotes: list[str], spec: PortSpec, field: str = "remotes") -> list[str]:
    """Remote VTEPs in canonical form, sorted, without duplicates, of the underlay's family and
    not the local address."""
    out: set[str] = set()
    want = ipaddress.ip_address(spec.local).version if spec.local else None
    for value in remotes:
        address = values.host_address(value, field)
        version = ipaddress.ip_address(address).version
        if want is None:
            want = version
        if version != want:
            raise InvalidArgument(field, value, f"is IPv{version}; the tunnel's underlay is "
                                                f"IPv{want}")
        if address == spec.local:
            raise InvalidArgument(field, value, "is the tunnel's own local address")
        out.add(address)
    return sorted(out, key=ipaddress.ip_address)


def refuse_own(links: LinksApi, remotes: list[str], field: str) -> None:
    """A remote VTEP must be another host: none of this host's addresses."""
    mine = links.host_addresses()
    for remote in remotes:
        if remote in mine:
            raise InvalidArgument(field, remote, "is an address of this host itself")


class VxlanDriver(PortDriver):
    type = "vxlan"
    link_kind = "vxlan"
    makes_link = True
    accepts = frozenset({"vni", "local", "dstport", "remotes", "mtu"})

    dp_kind = PortKind.TUNNEL

    def validate(self, spec: PortSpec) -> PortSpec:
        vni = values.vni(spec.vni, "vni")
        local = values.host_address(spec.local, "local") if spec.local else ""
        dstport = values.udp_port(spec.dstport, "dstport") if spec.dstport else VXLAN_PORT
        if spec.xdp not in ("", "off"):
            raise InvalidArgument("xdp", spec.xdp, "a vxlan port runs no XDP program (only off)")
        spec = replace(spec, vni=vni, local=local, dstport=dstport)
        return replace(spec, remotes=check_remotes(spec.remotes, spec))

    def create(self, env: PortEnv, br: Bridge, port: Port, existing: LinkInfo | None,
               txn: Txn) -> Port:
        spec = port.spec
        refuse_existing(port.name, existing)
        if spec.local and spec.local not in env.links.host_addresses():
            raise InvalidArgument("local", spec.local, "is not an address of this host")
        refuse_own(env.links, spec.remotes, "remotes")
        external = br.datapath == "ebpf"
        txn.step(f"create vxlan {port.name} (VNI {spec.vni})",
                 lambda: self._make(env, spec, external), lambda: env.links.delete(port.name))
        return port

    @staticmethod
    def _make(env: PortEnv, spec: PortSpec, external: bool) -> LinkInfo:
        return env.links.create_vxlan(spec.name, vni=spec.vni, local=spec.local,
                                      dstport=spec.dstport or VXLAN_PORT, external=external,
                                      mtu=spec.mtu or None)

    def destroy(self, env: PortEnv, br: Bridge, port: Port) -> None:
        env.links.delete(port.name)

    def recreate(self, env: PortEnv, br: Bridge, port: Port) -> str | None:
        self._make(env, port.spec, br.datapath == "ebpf")
        return None


DRIVER = VxlanDriver()
