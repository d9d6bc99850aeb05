"""The vswitchd side of the agent: read tunnel ports and local MACs, apply actions. Only the
public gRPC API (vswapi) is used, like any controller.

`SwitchSide` is the seam the agent depends on; `GrpcSwitch` is the real one (unit tests use a
fake of their own).
"""

from __future__ import annotations

from typing import Protocol

import grpc
from google.protobuf.field_mask_pb2 import FieldMask

from vswapi import switch_pb2 as pb
from vswapi.client import connect
from vswcluster.reconcile import Action, AddFdb, DelFdb, LocalState, SetRemotes, Tunnel


class SwitchUnavailable(Exception):
    """vswitchd cannot be reached (or did not answer in time)."""


class SwitchSide(Protocol):
    def uptime(self) -> float: ...
    def read(self) -> LocalState: ...
    def apply(self, action: Action) -> None: ...


def _ips(addresses) -> tuple[str, ...]:
    return tuple(sorted({a.split("/", 1)[0] for a in addresses if a}))


def local_state(bridges, fdbs: dict[str, list]) -> LocalState:
    """LocalState from ListBridges' bridges (ports filled) and each bridge's FDB entries.
    Bridges without a tunnel port are not the agent's business."""
    state = LocalState()
    for br in bridges:
        tunnels = [p for p in br.ports if p.type == pb.PORT_TYPE_VXLAN]
        if not tunnels:
            continue
        tnames = {p.name for p in tunnels}
        entries = fdbs.get(br.name, [])
        for p in tunnels:
            fdb = {(e.vlan, e.mac.lower()): e.remote for e in entries
                   if e.port == p.name and e.static and e.remote}
            state.tunnels.append(Tunnel(br.name, p.name, p.vni, p.local,
                                        frozenset(p.remotes), fdb))
        macs: dict[tuple[int, str], tuple[str, ...]] = {}
        for e in entries:
            if e.port not in tnames and e.mac:
                macs.setdefault((e.vlan, e.mac.lower()), ())
        for p in br.ports:
            if p.type in (pb.PORT_TYPE_VETH, pb.PORT_TYPE_UNSPECIFIED) and p.mac:
                key = (p.vlan, p.mac.lower())
                macs[key] = tuple(sorted(set(macs.get(key, ())) | set(_ips(p.addresses))))
        for p in tunnels:
            # one bridge per VNI on a host; several tunnel ports of one VNI share its MACs
            merged = state.macs.setdefault(p.vni, {})
            for key, ips in macs.items():
                merged[key] = tuple(sorted(set(merged.get(key, ())) | set(ips)))
    return state


class GrpcSwitch:
    def __init__(self, socket_path: str | None = None, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self.client = connect(socket_path)
        self.address = self.client.address

    def close(self) -> None:
        self.client.close()

    def _call(self, rpc: str, request):
        try:
            return getattr(self.client, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise SwitchUnavailable(f"{self.address}: {exc.details()}") from None
            raise

    def uptime(self) -> float:
        return self._call("GetStatus", pb.GetStatusRequest()).uptime_seconds

    def read(self) -> LocalState:
        bridges = list(self._call("ListBridges", pb.ListBridgesRequest()).bridges)
        fdbs = {}
        for br in bridges:
            if any(p.type == pb.PORT_TYPE_VXLAN for p in br.ports):
                fdbs[br.name] = list(self._call(
                    "ListFdbEntries", pb.ListFdbEntriesRequest(bridge=br.name)).entries)
        return local_state(bridges, fdbs)

    def apply(self, action: Action) -> None:
        if isinstance(action, SetRemotes):
            self._call("UpdatePort", pb.UpdatePortRequest(
                port=pb.Port(bridge=action.bridge, name=action.port,
                             remotes=list(action.remotes)),
                update_mask=FieldMask(paths=["remotes"])))
        elif isinstance(action, AddFdb):
            self._call("CreateFdbEntry", pb.CreateFdbEntryRequest(
                bridge=action.bridge,
                entry=pb.FdbEntry(mac=action.mac, port=action.port, vlan=action.vlan,
                                  static=True, remote=action.remote)))
        elif isinstance(action, DelFdb):
            self._call("DeleteFdbEntry", pb.DeleteFdbEntryRequest(
                bridge=action.bridge, mac=action.mac, vlan=action.vlan, if_exists=True))
        else:  # pragma: no cover
            raise TypeError(f"unknown action {action!r}")
