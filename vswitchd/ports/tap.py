"""TAP ports: a tap device that a VM (QEMU) opens, owned by a user, optionally multi-queue."""

from __future__ import annotations

import pwd

from vswitchd.errors import InvalidArgument
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.netlink.types import LinkInfo
from vswitchd.ports.base import PortDriver, PortEnv, refuse_existing
from vswitchd.txn import Txn


class TapDriver(PortDriver):
    type = "tap"
    link_kind = "tun"
    accepts = frozenset({"mtu", "owner", "multi_queue"})
    xdp_default = "auto"
    xdp_target = "always"

    def validate(self, spec: PortSpec) -> PortSpec:
        if spec.owner:
            try:
                pwd.getpwnam(spec.owner)
            except KeyError:
                raise InvalidArgument("owner", spec.owner, "no such user") from None
        return spec

    def create(self, env: PortEnv, br: Bridge, port: Port, existing: LinkInfo | None,
               txn: Txn) -> Port:
        refuse_existing(port.name, existing)
        txn.step(f"create tap {port.name}", lambda: self._make(env, port.spec),
                 lambda: env.links.delete(port.name))
        return port

    @staticmethod
    def _make(env: PortEnv, spec: PortSpec) -> LinkInfo:
        return env.links.create_tap(spec.name, owner=spec.owner or None, mtu=spec.mtu or None,
                                    multi_queue=spec.multi_queue)

    def destroy(self, env: PortEnv, br: Bridge, port: Port) -> None:
        env.links.delete(port.name)

    def recreate(self, env: PortEnv, br: Bridge, port: Port) -> str | None:
        self._make(env, port.spec)
        return None


DRIVER = TapDriver()
