"""Reconciliation: make the kernel and the datapath match the desired state, at start (every
bridge and port) and while running (only what differs from the kernel: netlink events), and
forget the ports of containers that went away. It never fails the daemon for one port."""

from __future__ import annotations

import logging

from vswitchd.errors import SwitchError
from vswitchd.model import Bridge, Port
from vswitchd.switch.bridges import BridgeManager
from vswitchd.switch.context import Context
from vswitchd.switch.fdb import FdbManager
from vswitchd.switch.flows import FlowManager
from vswitchd.switch.ports import PortManager

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, ctx: Context, bridges: BridgeManager, ports: PortManager,
                 fdb: FdbManager, flows: FlowManager) -> None:
        self.ctx = ctx
        self.bridges = bridges
        self.ports = ports
        self.fdb = fdb
        self.flows = flows

    def everything(self) -> None:
        """Every stored bridge and port (a start); stale datapath entries are pruned."""
        keep: set[int] = set()
        with self.ctx.links.remembering():
            for br in self.ctx.bridges.values():
                keep |= self._bridge(br)
        self._prune(keep)

    def changed(self) -> None:
        """Only the bridges and ports that differ from the kernel (a full pass re-attaches every
        port: seconds for a hundred ports); stale datapath entries (old ifindexes) are
        pruned."""
        ctx = self.ctx
        keep: set[int] = set()
        for br in ctx.bridges.values():
            info = ctx.links.get(br.name)
            if info is None or info.kind != "bridge":
                keep |= self._bridge(br)
                continue
            keep.add(info.ifindex)
            if br.facts.mac and info.mac != br.facts.mac:
                self._own_mac(br)
            touched = False
            for port in list(br.ports.values()):
                link = ctx.links.get(port.name)
                if link is not None and link.master == info.ifindex \
                        and port.name not in ctx.missing:
                    keep.add(link.ifindex)
                    continue
                restored = self._port(br, port)
                if restored is not None:
                    keep.add(restored)
                    touched = True
            if touched:
                self.ports.xdp.settle(br)
                self.fdb.restore(br)
                self.flows.restore(br)
        self._prune(keep)

    def links_changed(self) -> None:
        """After netlink events: forget vanished containers, restore what differs, and log
        what went missing or came back."""
        missing = self.ctx.missing
        before = set(missing)
        self.vanished_containers()
        self.changed()
        for name in sorted(set(missing) - before):
            log.warning("%s is missing: %s", name, missing[name])
        for name in sorted(before - set(missing)):
            if self.ctx.port_owner(name) or name in self.ctx.bridges:
                log.info("%s is back", name)

    def vanished_containers(self) -> list[str]:
        """Remove the ports whose container went away (each says so in the log); their
        names."""
        gone = []
        for br in list(self.ctx.bridges.values()):
            for port in list(br.ports.values()):
                if not self.ports.vanished(port):
                    continue
                log.warning("port %s removed from bridge %s: its network namespace %s is gone "
                            "(the container went away)", port.name, br.name, port.spec.netns)
                self.flows.drop_port(br, port.name)
                self.ports.remove(br, port)
                gone.append(port.name)
        return gone

    def _bridge(self, br: Bridge) -> set[int]:
        """The bridge, its ports, NAT, static FDB and flows; the ifindexes to keep."""
        try:
            keep = self.bridges.restore(br)
            self.ctx.missing.pop(br.name, None)
        except SwitchError as exc:
            self.ctx.missing[br.name] = str(exc)
            log.error("bridge %s could not be restored: %s", br.name, exc)
            return set()
        self._own_mac(br)
        with self.ctx.flood_sync_once():
            for port in list(br.ports.values()):
                restored = self._port(br, port)
                if restored is not None:
                    keep.add(restored)
            self.ports.xdp.settle(br)  # XDP targets, veth peers' GRO
        self.bridges.restore_nat(br)
        self.fdb.restore(br)
        self.flows.restore(br)
        return keep

    def _own_mac(self, br: Bridge) -> None:
        try:
            self.bridges.keep_mac(br)
        except SwitchError as exc:
            log.error("bridge %s: its own MAC %s not set back: %s", br.name, br.facts.mac, exc)

    def _port(self, br: Bridge, port: Port) -> int | None:
        try:
            info = self.ports.restore(br, port)
        except SwitchError as exc:
            self.ctx.missing[port.name] = str(exc)
            log.error("port %s of bridge %s could not be restored: %s", port.name, br.name, exc)
            return None
        return info.ifindex if info is not None else None

    def _prune(self, keep: set[int]) -> None:
        for backend in self.ctx.backends.all():
            backend.prune(keep)
