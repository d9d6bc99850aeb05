"""A fake of vswcluster's vswitchd seam (vswcluster.switch.SwitchSide), for unit tests and the
etcd tests of the agent loop. It keeps tunnel ports, their remotes and remote FDB entries, the
local MACs, and refuses what the daemon would (an FDB entry's remote must be a port remote)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from vswcluster.reconcile import Action, AddFdb, DelFdb, LocalState, SetRemotes, Tunnel
from vswcluster.switch import SwitchUnavailable


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@dataclass
class FakeTunnel:
    bridge: str
    port: str
    vni: int
    local: str
    remotes: set[str] = field(default_factory=set)
    fdb: dict[tuple[int, str], str] = field(default_factory=dict)


class FakeSwitch:
    def __init__(self) -> None:
        self.tunnels: dict[tuple[str, str], FakeTunnel] = {}
        self.macs: dict[int, dict[tuple[int, str], tuple[str, ...]]] = {}
        self.up = True
        self.started = 0.0
        self.clock = 100.0
        self.applied: list[Action] = []

    def add_tunnel(self, bridge: str, port: str, vni: int, local: str) -> None:
        self.tunnels[(bridge, port)] = FakeTunnel(bridge, port, vni, local)

    def add_mac(self, vni: int, mac: str, ips: tuple[str, ...] = (), vlan: int = 0) -> None:
        self.macs.setdefault(vni, {})[(vlan, mac)] = ips

    def restart(self) -> None:
        """Like a daemon restarted on a state without the agent's entries."""
        for t in self.tunnels.values():
            t.remotes.clear()
            t.fdb.clear()
        self.clock = 1.0

    def _check(self) -> None:
        if not self.up:
            raise SwitchUnavailable("fake vswitchd is down")

    def uptime(self) -> float:
        self._check()
        self.clock += 0.1
        return self.clock

    def read(self) -> LocalState:
        self._check()
        return LocalState(
            tunnels=[Tunnel(t.bridge, t.port, t.vni, t.local, frozenset(t.remotes), dict(t.fdb))
                     for t in self.tunnels.values()],
            macs={vni: dict(m) for vni, m in self.macs.items()})

    def apply(self, action: Action) -> None:
        self._check()
        t = self.tunnels.get((action.bridge, action.port))
        if t is None:
            raise Refused(grpc.StatusCode.NOT_FOUND, f"no port {action.port}")
        if isinstance(action, SetRemotes):
            t.remotes = set(action.remotes)
        elif isinstance(action, AddFdb):
            if action.remote not in t.remotes:
                raise Refused(grpc.StatusCode.FAILED_PRECONDITION,
                              f"remote {action.remote} is not a VTEP of {action.port}")
            t.fdb[(action.vlan, action.mac)] = action.remote
        elif isinstance(action, DelFdb):
            t.fdb.pop((action.vlan, action.mac), None)
        self.applied.append(action)
