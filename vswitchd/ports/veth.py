"""veth ports: a pair whose peer lives in a container's network namespace (created, when named
and absent, and removed with its last port). The datapath reaches the peer's stack directly
(bpf_redirect_peer)."""

from __future__ import annotations

import logging
from dataclasses import replace

from vswitchd import validate
from vswitchd.datapath import PortKind
from vswitchd.errors import InvalidArgument
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.netlink import netns as netns_names
from vswitchd.netlink.types import LinkInfo
from vswitchd.ports.base import PortDriver, PortEnv, refuse_existing
from vswitchd.txn import Txn

log = logging.getLogger(__name__)


class VethDriver(PortDriver):
    type = "veth"
    link_kind = "veth"
    dp_kind = PortKind.PEER
    accepts = frozenset({"netns", "peer_name", "addresses", "mac", "mtu", "gateway"})
    xdp_default = "off"
    xdp_target = "peer-napi"

    def validate(self, spec: PortSpec) -> PortSpec:
        ref = spec.netns or spec.name  # default: a namespace named after the port
        if not spec.netns and not netns_names.is_named(ref):
            raise InvalidArgument(
                "port", spec.name, "cannot name its network namespace (a veth port's namespace "
                "is named after it, and namespace names take letters, digits, '_', '.' and "
                "'-'); give one: --netns NAME (netns: in the configuration file)")
        netns_names.resolve(ref)  # rejects names that are neither a safe name nor a path
        if netns_names.is_own(ref):
            raise InvalidArgument("netns", spec.netns, "is the network namespace vswitchd runs "
                                  "in: the peer of a veth port lives in another one (a "
                                  "container's)")
        peer = validate.ifname(spec.peer_name or "eth0", "peer_name")
        addresses = validate.distinct_addresses([validate.cidr(a, "ip")
                                                 for a in spec.addresses])
        mac = validate.unicast_mac(spec.mac) if spec.mac else ""
        gateway = validate.gateway(spec.gateway, addresses) if spec.gateway else ""
        return replace(spec, netns=ref, peer_name=peer, addresses=addresses, mac=mac,
                       gateway=gateway)

    def create(self, env: PortEnv, br: Bridge, port: Port, existing: LinkInfo | None,
               txn: Txn) -> Port:
        spec = port.spec
        refuse_existing(spec.name, existing)
        facts = port.facts
        if env.netns.is_named(spec.netns):
            if not env.netns.exists(spec.netns):
                txn.step(f"create netns {spec.netns}",
                         lambda: env.netns.create_named(spec.netns),
                         lambda: env.netns.remove_named(spec.netns))
                facts = replace(facts, netns_created=True)
        elif not env.netns.exists(spec.netns):
            raise InvalidArgument("netns", spec.netns, "does not exist")
        txn.step(f"create veth {spec.name}", lambda: self._make(env, spec),
                 lambda: env.links.delete(spec.name))
        return Port(spec, facts)

    @staticmethod
    def _make(env: PortEnv, spec: PortSpec) -> LinkInfo:
        return env.links.create_veth(spec.name, spec.peer_name, spec.netns,
                                     addresses=spec.addresses, mac=spec.mac or None,
                                     mtu=spec.mtu or None, gateway=spec.gateway or None)

    def destroy(self, env: PortEnv, br: Bridge, port: Port) -> None:
        env.links.delete(port.name)
        if not port.facts.netns_created:
            return
        users = env.netns_users(port.spec.netns, port)
        if users:
            # the namespace is still ours, via another port
            users[0].facts = replace(users[0].facts, netns_created=True)
        else:
            env.netns.remove_named(port.spec.netns)

    def recreate(self, env: PortEnv, br: Bridge, port: Port) -> str | None:
        spec = port.spec
        if not env.netns.exists(spec.netns):
            if not port.facts.netns_created:
                return f"network namespace {spec.netns} is gone"
            env.netns.create_named(spec.netns)
        self._make(env, spec)
        return None

    def vanished(self, env: PortEnv, port: Port) -> bool:
        """The interface went with a namespace the daemon did not create: the container is
        gone."""
        return (not port.facts.netns_created and env.links.get(port.name) is None
                and not env.netns.exists(port.spec.netns))


DRIVER = VethDriver()
