"""The forwarding database: static entries (desired state, installed in the bridge's datapath)
and the learned ones the datapath keeps, listed with port names and ages."""

from __future__ import annotations

import logging

from vswitchd import validate
from vswitchd.errors import InvalidArgument, NotFound, SwitchError, clip
from vswitchd.model import Bridge, StaticFdb
from vswitchd.ports.vxlan import check_remotes, refuse_own
from vswitchd.switch.context import Context
from vswitchd.switch.tunnels import TUNNEL_TYPES, tunnel_ports
from vswitchd.txn import Txn
from vswitchd.views import FdbView

log = logging.getLogger(__name__)


class FdbManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def list(self, br: Bridge) -> list[FdbView]:
        names = self.ctx.port_names(br)
        backend = self.ctx.backend(br)
        remotes = {p.name: backend.fdb_remotes(p.name) for p in tunnel_ports(br)
                   if p.name in names.values()}
        views = []
        for r in backend.fdb_list(br.name):
            port = names.get(r.ifindex, f"ifindex:{r.ifindex}")
            remote = r.remote or remotes.get(port, {}).get(r.mac, "")
            views.append(FdbView(r.mac, port, r.vlan, r.static,
                                 0.0 if r.static else round(r.age_seconds, 1), remote))
        return sorted(views, key=lambda v: (v.vlan, v.port, v.mac))

    @staticmethod
    def check(mac: str, vlan: int, unicast: bool = True) -> tuple[str, int]:
        """MAC and VLAN in canonical form (a static entry's MAC must be unicast)."""
        return (validate.unicast_mac(mac) if unicast else validate.mac(mac)), validate.vlan(vlan)

    def add(self, br: Bridge, mac: str, port: str, vlan: int, txn: Txn,
            remote: str = "") -> FdbView:
        if port != br.name and port not in br.ports:
            raise NotFound(f"port {clip(port)} does not exist on bridge {br.name}")
        remote = self.check_remote(br, port, remote)
        previous = next((f for f in br.fdb if (f.mac, f.vlan) == (mac, vlan)), None)
        backend = self.ctx.backend(br)

        def uninstall() -> None:
            if previous is not None:
                self.install(br, previous)
            else:
                backend.fdb_delete(br.name, mac, vlan)
                if remote:
                    backend.fdb_remote_delete(port, mac)

        entry = StaticFdb(mac, port, vlan, remote)
        txn.step(f"install FDB entry {mac}", lambda: self.install(br, entry), uninstall)
        old = br.fdb
        new = [f for f in br.fdb if (f.mac, f.vlan) != (mac, vlan)] + [entry]
        txn.step("update the static FDB entries", lambda: setattr(br, "fdb", new),
                 lambda: setattr(br, "fdb", old))
        return FdbView(mac, port, vlan, True, 0.0, remote)

    def check_remote(self, br: Bridge, port: str, remote: str) -> str:
        """The remote VTEP of a static entry: needed on a tunnel port, refused elsewhere."""
        tunnel = port in br.ports and br.ports[port].type in TUNNEL_TYPES
        if not remote:
            if tunnel:
                raise InvalidArgument("remote", remote, f"{port} is a tunnel port: its entries "
                                      "name the remote VTEP the MAC is behind")
            return ""
        if not tunnel:
            raise InvalidArgument("remote", remote, f"applies only to tunnel ports; {port} is "
                                  "not one")
        canonical = check_remotes([remote], br.ports[port].spec, "remote")[0]
        refuse_own(self.ctx.links, [canonical], "remote")
        return canonical

    def install(self, br: Bridge, entry: StaticFdb) -> None:
        backend = self.ctx.backend(br)
        backend.require()
        backend.fdb_add_static(br.name, entry.port, entry.mac, entry.vlan, entry.remote)

    def restore(self, br: Bridge) -> None:
        for entry in br.fdb:
            try:
                self.install(br, entry)
            except SwitchError as exc:
                log.error("static FDB entry %s on %s not restored: %s", entry.mac, br.name, exc)

    def delete(self, br: Bridge, mac: str, vlan: int, if_exists: bool) -> tuple[bool, bool]:
        """(deleted, the desired state changed)."""
        backend = self.ctx.backend(br)
        deleted = backend.fdb_delete(br.name, mac, vlan)
        for f in br.fdb:
            if (f.mac, f.vlan) == (mac, vlan) and f.remote:
                backend.fdb_remote_delete(f.port, mac)
        kept = [f for f in br.fdb if (f.mac, f.vlan) != (mac, vlan)]
        changed = len(kept) != len(br.fdb)
        if changed:
            br.fdb = kept
            deleted = True
        if not deleted and not if_exists:
            raise NotFound(f"no FDB entry for {mac} vlan {vlan} on bridge {br.name}")
        return deleted, changed

    def sweep(self) -> int:
        """Age out learned entries; the datapath keeps their last-seen time."""
        aging = self.ctx.cfg.fdb_aging_seconds
        return sum(b.sweep_fdb(aging) for b in self.ctx.backends.all())
