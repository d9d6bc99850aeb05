"""Links over netlink (pyroute2): bridges, veth pairs into namespaces, TAPs, kernel-bridge FDB.

Everything runs in the network namespace the process was in when `Links()` was made.

Threading: pyroute2 0.9's IPRoute keeps its socket and asyncio loop per *thread* (a second thread
using the same object silently opens a second socket, in whatever namespace that thread is in).
So a Links object owns one worker thread that holds the IPRoute and runs every request; public
methods hand their work to it and wait. That makes Links safe to call from any thread (gRPC
workers) and serialises kernel changes, so a multi-step operation and its rollback never
interleave with another.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import pwd
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyroute2.iproute import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFT_MULTI_QUEUE, IFT_NO_PI, IFT_TAP, tuntap

from vswitchd.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    SwitchError,
    Unavailable,
)
from vswitchd.netlink import bulk, linkdump
from vswitchd.netlink import netns as _netns
from vswitchd.netlink import vxlan as _vxlan
from vswitchd.netlink._util import (
    IFF_UP,
    _get,
    _kernel,
    _quiet,
    _require,
    _to_info,
    drop_stray_replies,
)
from vswitchd.netlink.errors import translate
from vswitchd.netlink.types import FdbRecord, L3Config, LinkInfo, LinkStats, Route, VxlanInfo

__all__ = ["FdbRecord", "L3Config", "LinkInfo", "LinkStats", "Links", "Route", "VxlanInfo",
           "translate"]

IFA_F_NODAD = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_MASTER = 0x04
# NDA_CACHEINFO times are clock_t: USER_HZ ticks (100 per second on Linux).
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

T = TypeVar("T")


def _make_tap(name: str, uid: int | None, multi_queue: bool) -> None:
    """A persistent TAP: TUNSETIFF, TUNSETOWNER, TUNSETPERSIST on /dev/net/tun, as pyroute2's
    "tuntap" link does, but with the name in UTF-8 (pyroute2 0.9 encodes it as ASCII: a TAP
    named 'é' failed while a bridge or veth of that name worked)."""
    if tuntap.TUNSETIFF is None:
        raise FailedPrecondition(f"TAP devices are not supported on {os.uname().machine}")
    flags = IFT_TAP | IFT_NO_PI | (IFT_MULTI_QUEUE if multi_queue else 0)
    ifr = name.encode().ljust(tuntap.IFNAMSIZ, b"\0") + struct.pack("H", flags)
    fd = os.open(tuntap.TUNDEV, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, tuntap.TUNSETIFF, ifr)
        if uid is not None:
            fcntl.ioctl(fd, tuntap.TUNSETOWNER, uid)
        fcntl.ioctl(fd, tuntap.TUNSETPERSIST, 1)
    finally:
        os.close(fd)


RT_TABLE_MAIN = 254
RTPROT_KERNEL = 2
RTN_UNICAST = 1
DEFAULT_MTU = 1500


# --------------------------------------------------------------------------------------------


def _parse_addresses(addresses: Iterable[str]) -> list[ipaddress.IPv4Interface |
                                                       ipaddress.IPv6Interface]:
    out = []
    for a in addresses:
        try:
            out.append(ipaddress.ip_interface(a))
        except (ValueError, TypeError):
            raise InvalidArgument("addresses", a, "is not an address with prefix length") from None
    return out


def _sync_addresses(ipr: IPRoute, index: int, ifname: str, wanted: list[str]) -> None:
    """Make the addresses of INDEX exactly WANTED (kernel-made IPv6 link-local ones are kept).

    All-or-nothing: on failure what was added is removed and what was removed is put back.
    """
    want = {(str(i.ip), i.network.prefixlen) for i in _parse_addresses(wanted)}
    have: dict[tuple[str, int], Any] = {}
    with _kernel(f"list addresses of {ifname}", name=ifname):
        for m in ipr.addr("dump", index=index):
            ip = m.get_attr("IFA_ADDRESS")
            key = (str(ipaddress.ip_address(ip)), m["prefixlen"])
            if key in want:
                have[key] = m
                continue
            if ipaddress.ip_address(ip).is_link_local and ipaddress.ip_address(ip).version == 6:
                continue
            have[key] = m
    to_del = [k for k in have if k not in want]
    to_add = sorted(k for k in want if k not in have)
    added: list[tuple[str, int]] = []
    removed: list[tuple[str, int]] = []
    try:
        for ip, plen in to_del:
            with _kernel(f"remove address {ip}/{plen} from {ifname}", name=ifname):
                ipr.addr("del", index=index, address=ip, prefixlen=plen)
            removed.append((ip, plen))
        for ip, plen in to_add:
            with _kernel(f"add address {ip}/{plen} to {ifname}", name=ifname,
                         field="addresses", value=f"{ip}/{plen}"):
                ipr.addr("add", index=index, address=ip, prefixlen=plen)
            added.append((ip, plen))
    except BaseException:
        for ip, plen in added:
            _quiet(ipr.addr, "del", index=index, address=ip, prefixlen=plen)
        for ip, plen in removed:
            _quiet(ipr.addr, "add", index=index, address=ip, prefixlen=plen)
        raise


def _route_kw(route: Route) -> dict[str, Any]:
    kw: dict[str, Any] = {"dst": route.dst}
    if route.gateway:
        kw["gateway"] = route.gateway
    if route.metric:
        kw["priority"] = route.metric
    return kw


log = logging.getLogger(__name__)


class Links:
    """Link management for one daemon; wraps one pyroute2 IPRoute on a private worker thread."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vsw-netlink")
        self._closed = False
        self._lock = threading.Lock()
        self._snap = threading.local()  # snapshot(): this thread's dump of the links
        try:
            self._ipr: IPRoute = self._pool.submit(IPRoute).result()
        except BaseException:
            self._pool.shutdown(wait=False)
            raise

    # ---- plumbing ------------------------------------------------------------------------

    def _run(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        if getattr(self._snap, "memo", None):
            self._snap.memo.clear()  # it may change links: what get() remembered may be stale
        with self._lock:
            if self._closed:
                raise Unavailable("netlink: Links object is closed")
            fut = self._pool.submit(self._in_worker, fn, *args, **kw)
        return fut.result()

    def _in_worker(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        try:
            return fn(*args, **kw)
        finally:
            drop_stray_replies(self._ipr)  # on the worker: the queue is not thread-safe

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            fut = self._pool.submit(self._ipr.close)
        try:
            fut.result()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Links:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- queries -------------------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Within it, this thread's get(), get_by_index() and stats() answer from one dump of
        every link (vswitchd.netlink.linkdump), taken on entry: a listing of N ports asks the
        kernel once, not 3 N times. For reads only (a change made meanwhile is not seen);
        other threads are unaffected."""
        if getattr(self._snap, "links", None) is not None:
            yield  # nested: the outer snapshot serves
            return

        self._snap.links = linkdump.dump()
        try:
            yield
        finally:
            self._snap.links = None

    def _snapshot(self) -> dict[str, tuple[LinkInfo, LinkStats]] | None:
        return getattr(self._snap, "links", None)

    @contextlib.contextmanager
    def remembering(self) -> Iterator[None]:
        """Within it, this thread's get() asks the kernel once per name until a change made
        through this object (anything that goes to pyroute2) forgets what it remembered: a
        reconciliation asks about the same bridge and port ten times a port."""
        if getattr(self._snap, "memo", None) is not None:
            yield  # nested: the outer one remembers
            return
        self._snap.memo = {}
        try:
            yield
        finally:
            self._snap.memo = None

    # Single-link reads go through linkdump (one request, parsed with struct), not pyroute2,
    # whose parse of a message cost 0.75 ms: an add-port makes several.

    def get(self, name: str, fresh: bool = False) -> LinkInfo | None:
        """The link named name, None if there is none. fresh: ask the kernel even within
        remembering() (what the datapath changes, such as the XDP programs, it cannot see)."""
        snap = self._snapshot()
        if snap is not None:
            found = snap.get(name)
            return found[0] if found is not None else None
        memo = getattr(self._snap, "memo", None)
        if memo is not None and name in memo and not fresh:
            return memo[name]
        found = linkdump.get(name=name)
        info = found[0] if found is not None else None
        if memo is not None:
            memo[name] = info
        return info

    def get_by_index(self, ifindex: int) -> LinkInfo | None:
        snap = self._snapshot()
        if snap is not None:
            return next((info for info, _ in snap.values() if info.ifindex == ifindex), None)
        found = linkdump.get(index=ifindex) if ifindex else None
        return found[0] if found is not None else None

    def stats(self, name: str) -> LinkStats:
        snap = self._snapshot()
        found = snap.get(name) if snap is not None else linkdump.get(name=name)
        if found is None:
            raise NotFound(f"interface {name} does not exist")
        return found[1]

    # ---- bridges -------------------------------------------------------------------------

    def create_bridge(self, name: str, addresses: Iterable[str] = (),
                      mac: str | None = None) -> LinkInfo:
        """A Linux bridge with STP off and forward delay 0, up, with ADDRESSES; with MAC, that
        address from the start (an address set explicitly is one the kernel keeps when ports
        come and go; without, the bridge takes its lowest port's MAC, or zeros)."""
        addresses = list(addresses)
        _parse_addresses(addresses)

        def work() -> LinkInfo:
            ipr = self._ipr
            if _get(ipr, name) is not None:
                raise AlreadyExists(f"interface {name} already exists")
            extra = {"address": mac} if mac else {}
            with _kernel(f"create bridge {name}", name=name, field="mac", value=mac):
                ipr.link("add", ifname=name, kind="bridge", br_stp_state=0, br_forward_delay=0,
                         **extra)
            try:
                index = _require(ipr, name)["index"]
                _sync_addresses(ipr, index, name, addresses)
                with _kernel(f"bring bridge {name} up", name=name):
                    ipr.link("set", index=index, state="up")
                return _to_info(_require(ipr, name))
            except BaseException:
                _quiet(ipr.link, "del", ifname=name)
                raise

        return self._run(work)

    def set_addresses(self, name: str, addresses: Iterable[str]) -> None:
        """Make the addresses of NAME exactly ADDRESSES (IPv6 link-local ones are left alone)."""
        addresses = list(addresses)
        _parse_addresses(addresses)

        def work() -> None:
            index = _require(self._ipr, name)["index"]
            _sync_addresses(self._ipr, index, name, addresses)

        self._run(work)

    @contextlib.contextmanager
    def deleting_together(self) -> Iterator[None]:
        """Within it, this thread's delete() only notes the link; on the way out, the links
        noted go in one kernel operation (bulk.py: 20 ms a link one by one). A link that
        cannot be deleted together is deleted on its own (logged when that fails too)."""
        if getattr(self._snap, "doomed", None) is not None:
            yield  # nested: the outer one deletes
            return
        doomed: dict[str, int] = {}
        self._snap.doomed = doomed
        try:
            yield
        finally:
            self._snap.doomed = None
            try:
                bulk.delete_links(list(doomed.values()))
            except SwitchError as exc:
                log.warning("deleting %d links together failed (%s): one by one", len(doomed),
                            exc)
                for name in doomed:
                    try:
                        self.delete(name)
                    except SwitchError as err:
                        log.error("interface %s not deleted: %s", name, err)

    def delete(self, name: str) -> bool:
        """Delete NAME (for a veth, both ends go). False if it does not exist."""
        doomed = getattr(self._snap, "doomed", None)
        if doomed is not None:
            info = self.get(name)
            if info is None:
                return False
            doomed[name] = info.ifindex
            return True

        def work() -> bool:
            msg = _get(self._ipr, name)
            if msg is None:
                return False
            try:
                self._ipr.link("del", index=msg["index"])
            except NetlinkError as exc:
                if exc.code in (errno.ENODEV, errno.ENOENT):
                    return False
                raise translate(exc, f"delete interface {name}", name=name) from exc
            return True

        return self._run(work)

    # ---- veth ----------------------------------------------------------------------------

    def create_veth(
        self,
        name: str,
        peer_name: str,
        netns: str,
        *,
        addresses: Iterable[str] = (),
        mac: str | None = None,
        mtu: int | None = None,
        gateway: str | None = None,
    ) -> LinkInfo:
        """A veth pair: NAME stays here (up), PEER_NAME lives in NETNS (mac/mtu/addresses, up);
        with GATEWAY, the namespace's default route goes through it via the peer.

        The peer is created directly inside the namespace under its final name (one atomic
        RTM_NEWLINK), so there is no temporary name to collide with. On any later failure the
        pair is deleted again.
        """
        addresses = list(addresses)
        _parse_addresses(addresses)

        def work() -> LinkInfo:
            ipr = self._ipr
            nsfd = _netns.open_netns(netns)  # InvalidArgument / NotFound
            try:
                if _get(ipr, name) is not None:
                    raise AlreadyExists(f"interface {name} already exists")
                with _netns.entered(netns):
                    nsipr = IPRoute()  # its socket is bound to NETNS for good
                try:
                    if _get(nsipr, peer_name) is not None:
                        raise AlreadyExists(
                            f"interface {peer_name} already exists in network namespace {netns}"
                        )
                    peer: dict[str, Any] = {"ifname": peer_name, "net_ns_fd": nsfd}
                    extra: dict[str, Any] = {}
                    if mac is not None:
                        peer["address"] = mac
                    if mtu is not None:
                        peer["mtu"] = mtu
                        extra["mtu"] = mtu
                    try:
                        ipr.link("add", ifname=name, kind="veth", peer=peer, **extra)
                    except NetlinkError as exc:
                        raise self._veth_error(exc, nsipr, name, peer_name, netns, mac,
                                               mtu) from exc
                    try:
                        self._setup_peer(nsipr, peer_name, netns, addresses, gateway)
                        host = _require(ipr, name)
                        with _kernel(f"bring {name} up", name=name):
                            ipr.link("set", index=host["index"], state="up")
                        return _to_info(_require(ipr, name))
                    except BaseException:
                        _quiet(ipr.link, "del", ifname=name)
                        raise
                finally:
                    nsipr.close()
            finally:
                os.close(nsfd)

        return self._run(work)

    @staticmethod
    def _veth_error(
        exc: NetlinkError,
        nsipr: IPRoute,
        name: str,
        peer_name: str,
        netns: str,
        mac: str | None,
        mtu: int | None,
    ) -> SwitchError:
        action = f"create veth {name} with peer {peer_name} in network namespace {netns}"
        if exc.code == errno.EEXIST:
            if _get(nsipr, peer_name) is not None:
                return AlreadyExists(
                    f"interface {peer_name} already exists in network namespace {netns}"
                )
            return AlreadyExists(f"interface {name} already exists")
        if exc.code == errno.EADDRNOTAVAIL and mac is not None:
            return InvalidArgument("mac", mac, f"rejected by the kernel ({action})")
        if exc.code in (errno.EINVAL, errno.ERANGE) and mtu is not None:
            return InvalidArgument("mtu", mtu, f"rejected by the kernel ({action}: "
                                   f"{os.strerror(exc.code)})")
        return translate(exc, action, name=name)

    @staticmethod
    def _setup_peer(nsipr: IPRoute, peer_name: str, netns: str, addresses: list[str],
                    gateway: str | None = None) -> None:
        where = f"{peer_name} in network namespace {netns}"
        peer = _require(nsipr, peer_name)
        _sync_addresses(nsipr, peer["index"], where, addresses)
        with _kernel(f"bring {where} up", name=peer_name):
            nsipr.link("set", index=peer["index"], state="up")
        if gateway:
            family_any = "::/0" if ":" in gateway else "0.0.0.0/0"
            with _kernel(f"set the default route of network namespace {netns} via {gateway}",
                         name=peer_name, field="gateway", value=gateway):
                nsipr.route("replace", dst=family_any, gateway=gateway, oif=peer["index"])
        lo = _get(nsipr, "lo")
        if lo is not None and not lo["flags"] & IFF_UP:
            with _kernel(f"bring lo up in network namespace {netns}", name="lo"):
                nsipr.link("set", index=lo["index"], state="up")

    def peer_exists(self, netns: str, peer_name: str) -> bool:
        """True if NETNS exists and has an interface PEER_NAME."""

        def work() -> bool:
            if not _netns.exists(netns):
                return False
            try:
                with _netns.entered(netns):
                    nsipr = IPRoute()
            except NotFound:
                return False
            try:
                return _get(nsipr, peer_name) is not None
            finally:
                nsipr.close()

        return self._run(work)

    # ---- TAP -----------------------------------------------------------------------------

    def create_tap(
        self, name: str, *, owner: str | None = None, mtu: int | None = None,
        multi_queue: bool = False,
    ) -> LinkInfo:
        """A persistent TAP (IFF_TAP|IFF_NO_PI, no vnet header), admin up; with MULTI_QUEUE
        IFF_MULTI_QUEUE too, so a VM can open one queue per vCPU (each opener must then pass
        IFF_MULTI_QUEUE to TUNSETIFF).

        Carrier comes up when a process (QEMU) opens it with TUNSETIFF.
        """
        uid = None
        if owner is not None:
            try:
                uid = pwd.getpwnam(owner).pw_uid
            except (KeyError, TypeError):
                raise InvalidArgument("owner", owner, "no such user") from None

        def work() -> LinkInfo:
            ipr = self._ipr
            # TUNSETIFF on an existing TAP of the same name *attaches* instead of failing, so
            # the name must be checked first.
            if _get(ipr, name) is not None:
                raise AlreadyExists(f"interface {name} already exists")
            with _kernel(f"create TAP {name}", name=name):
                _make_tap(name, uid, multi_queue)
            try:
                index = _require(ipr, name)["index"]
                if mtu is not None:
                    with _kernel(f"set MTU of {name}", name=name, field="mtu", value=mtu):
                        ipr.link("set", index=index, mtu=mtu)
                with _kernel(f"bring {name} up", name=name):
                    ipr.link("set", index=index, state="up")
                return _to_info(_require(ipr, name))
            except BaseException:
                _quiet(ipr.link, "del", ifname=name)
                raise

        return self._run(work)

    # ---- ports ---------------------------------------------------------------------------

    def enslave(self, name: str, bridge: str) -> None:
        def work() -> None:
            port = _require(self._ipr, name)
            br = _require(self._ipr, bridge)
            if _to_info(br).kind != "bridge":
                raise FailedPrecondition(f"interface {bridge} is not a bridge")
            with _kernel(f"add {name} to bridge {bridge}", name=name):
                self._ipr.link("set", index=port["index"], master=br["index"])

        self._run(work)

    def release(self, name: str) -> None:
        def work() -> None:
            port = _require(self._ipr, name)
            with _kernel(f"remove {name} from its bridge", name=name):
                self._ipr.link("set", index=port["index"], master=0)

        self._run(work)

    def set_up(self, name: str) -> None:
        def work() -> None:
            port = _require(self._ipr, name)
            with _kernel(f"bring {name} up", name=name):
                self._ipr.link("set", index=port["index"], state="up")

        self._run(work)

    def set_mac(self, name: str, mac: str) -> None:
        def work() -> None:
            link = _require(self._ipr, name)
            with _kernel(f"set the MAC address of {name}", name=name, field="mac", value=mac):
                self._ipr.link("set", index=link["index"], address=mac)

        self._run(work)

    # ---- uplinks: moving the host's L3 configuration between a NIC and its bridge -----------

    def l3_config(self, name: str) -> L3Config:
        """NAME's global addresses and the main-table routes that leave by it (not the
        connected routes the kernel derives from the addresses)."""

        def work() -> L3Config:
            index = _require(self._ipr, name)["index"]
            addresses = []
            with _kernel(f"list addresses of {name}", name=name):
                for m in self._ipr.addr("dump", index=index):
                    ip = ipaddress.ip_address(m.get_attr("IFA_ADDRESS"))
                    if ip.version == 6 and ip.is_link_local:
                        continue
                    addresses.append(f"{ip}/{m['prefixlen']}")
            routes = []
            with _kernel(f"list routes via {name}", name=name):
                msgs = list(self._ipr.route("dump", oif=index))
            for m in msgs:
                if (m.get_attr("RTA_OIF") != index or m["proto"] == RTPROT_KERNEL
                        or m["type"] != RTN_UNICAST
                        or (m.get_attr("RTA_TABLE") or m["table"]) != RT_TABLE_MAIN):
                    continue
                family_any = "0.0.0.0" if m["family"] == 2 else "::"
                dst = m.get_attr("RTA_DST") or family_any
                if ipaddress.ip_network(f"{dst}/{m['dst_len']}", strict=False).is_link_local:
                    continue
                routes.append(Route(f"{dst}/{m['dst_len']}", m.get_attr("RTA_GATEWAY") or "",
                                    m.get_attr("RTA_PRIORITY") or 0))
            return L3Config(tuple(addresses), tuple(routes))

        return self._run(work)

    def move_l3(self, config: L3Config, src: str, dst: str) -> None:
        """Move CONFIG's addresses and routes from SRC to DST with the shortest gap: add the
        addresses to DST first, then take them off SRC, then re-add the routes via DST (the
        kernel drops gatewayed routes whose next hop became unreachable). All or nothing."""

        def work() -> None:
            ipr = self._ipr
            src_index = _require(ipr, src)["index"]
            dst_index = _require(ipr, dst)["index"]
            undo: list[Callable[[], None]] = []
            try:
                # add to DST first, then take off SRC: the host is never without the address
                for verb, index, inverse, name, absent in (
                    ("add", dst_index, "del", dst, AlreadyExists),
                    ("del", src_index, "add", src, NotFound),
                ):
                    for cidr in config.addresses:
                        iface = ipaddress.ip_interface(cidr)
                        kw = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
                        # the host owns the address already: no DAD, so IPv6 works at once
                        v6_add = verb == "add" and iface.version == 6
                        nodad = {"flags": IFA_F_NODAD} if v6_add else {}
                        try:
                            with _kernel(f"{verb} address {cidr} on {name}", name=name):
                                ipr.addr(verb, index=index, **kw, **nodad)
                        except absent:
                            continue
                        undo.append(lambda i=index, v=inverse, kw=kw: ipr.addr(v, index=i, **kw))
                for route in config.routes:
                    kw = _route_kw(route)
                    _quiet(ipr.route, "del", oif=src_index, **kw)
                    try:
                        with _kernel(f"add route {route.dst} via {dst}", name=dst):
                            ipr.route("add", oif=dst_index, **kw)
                        undo.append(lambda kw=kw: ipr.route("del", oif=dst_index, **kw))
                    except AlreadyExists:
                        pass
            except BaseException:
                for step in reversed(undo):
                    _quiet(step)
                for route in config.routes:  # put back what the kernel flushed from SRC
                    _quiet(ipr.route, "add", oif=src_index, **_route_kw(route))
                raise

        self._run(work)

    # ---- kernel-bridge FDB ---------------------------------------------------------------

    def _bridge_index(self, bridge: str) -> int:
        br = _require(self._ipr, bridge)
        if _to_info(br).kind != "bridge":
            raise FailedPrecondition(f"interface {bridge} is not a bridge")
        return br["index"]

    def _fdb_entries(self, br_index: int, bridge: str) -> list[FdbRecord]:
        out = []
        with _kernel(f"list the forwarding database of bridge {bridge}", name=bridge):
            msgs = list(self._ipr.fdb("dump"))
        for m in msgs:
            # Entries of the bridge itself carry NDA_MASTER = bridge; the NTF_SELF entries
            # of each device (its multicast addresses) carry none.
            if m.get_attr("NDA_MASTER") != br_index:
                continue
            if m["state"] & NUD_PERMANENT:  # 'local'/'permanent': a port's own MAC
                continue
            ci = m.get_attr("NDA_CACHEINFO") or {}
            out.append(
                FdbRecord(
                    mac=(m.get_attr("NDA_LLADDR") or "").lower(),
                    vlan=m.get_attr("NDA_VLAN") or 0,
                    ifindex=m["ifindex"],
                    static=bool(m["state"] & NUD_NOARP),
                    age_seconds=ci.get("ndm_updated", 0) / _CLK_TCK,
                )
            )
        return out

    def fdb_list(self, bridge: str) -> list[FdbRecord]:
        """Learned and static entries of BRIDGE's ports (ports' own 'local' MACs left out)."""

        def work() -> list[FdbRecord]:
            return self._fdb_entries(self._bridge_index(bridge), bridge)

        return self._run(work)

    def fdb_add_static(self, bridge: str, port: str, mac: str, vlan: int = 0) -> None:
        """Point MAC (on VLAN) at PORT for good. Replaces a learned or older static entry."""

        def work() -> None:
            br_index = self._bridge_index(bridge)
            p = _require(self._ipr, port)
            if p.get_attr("IFLA_MASTER") != br_index:
                raise FailedPrecondition(f"interface {port} is not a port of bridge {bridge}")
            kw: dict[str, Any] = {}
            if vlan:
                kw["vlan"] = vlan
            action = f"add static FDB entry {mac} vlan {vlan} -> {port} on bridge {bridge}"
            try:
                self._ipr.fdb("replace", ifindex=p["index"], lladdr=mac, state=NUD_NOARP,
                              flags=NTF_MASTER, **kw)
            except NetlinkError as exc:
                if exc.code == errno.EINVAL and vlan:
                    raise InvalidArgument(
                        "vlan", vlan, f"the kernel bridge {bridge} has no VLAN {vlan} on {port} "
                        "(no VLAN filtering here; use datapath ebpf for VLANs)") from exc
                if exc.code in (errno.EINVAL, errno.EADDRNOTAVAIL):
                    raise InvalidArgument("mac", mac, f"rejected by the kernel ({action})") from exc
                raise translate(exc, action, name=port) from exc

        self._run(work)

    def fdb_delete(self, bridge: str, mac: str, vlan: int = 0) -> bool:
        """Remove the entry for MAC on VLAN from BRIDGE. False if there is none."""
        mac = mac.lower().replace("-", ":")

        def work() -> bool:
            br_index = self._bridge_index(bridge)
            for e in self._fdb_entries(br_index, bridge):
                if e.mac != mac or e.vlan != vlan:
                    continue
                kw: dict[str, Any] = {"vlan": vlan} if vlan else {}
                try:
                    self._ipr.fdb("del", ifindex=e.ifindex, lladdr=mac,
                                  state=NUD_NOARP, flags=NTF_MASTER, **kw)
                except NetlinkError as exc:
                    if exc.code in (errno.ENOENT, errno.ENODEV):
                        return False
                    raise translate(exc, f"delete FDB entry {mac} from bridge {bridge}") from exc
                return True
            return False

        return self._run(work)

    # ---- VXLAN tunnels (vxlan.py) ----------------------------------------------------------

    def create_vxlan(self, name: str, *, vni: int, local: str = "", dstport: int = 4789,
                     external: bool = True, mtu: int | None = None) -> LinkInfo:
        """A VXLAN device NAME on UDP port DSTPORT, up.

        EXTERNAL (the eBPF datapath): collect_md with a VNI filter, learning off, VNI added to
        its filter (several such devices share a port, each with its own VNIs). Otherwise a
        classic device `id VNI` with learning on, for a kernel bridge. LOCAL: source address.

        AlreadyExists: the name is taken, or VNI is terminated by another device on the port
        (the message names it). FailedPrecondition: the port is in use by a VXLAN device of
        the other kind (named) or by another socket. InvalidArgument: vni, local, dstport, mtu.
        A half-made device is deleted before the error propagates.
        """
        return self._run(_vxlan.create, self._ipr, name, vni=vni, local=local,
                         dstport=dstport, external=external, mtu=mtu)

    def vxlan_info(self, name: str) -> VxlanInfo | None:
        """NAME's VXLAN settings; None if there is no such interface, FailedPrecondition if it
        is no VXLAN device."""
        return self._run(_vxlan.info, self._ipr, name)

    def vxlan_vnis(self, name: str) -> list[int]:
        """The VNIs NAME terminates: its VNI filter (read with RTM_GETTUNNEL), or a classic
        device's one VNI."""
        return self._run(_vxlan.vnis, self._ipr, name)

    def vxlan_set_remotes(self, name: str, addresses: list[str]) -> None:
        """Make the flood list (all-zeros FDB entries, head-end replication) of the classic
        VXLAN device NAME exactly ADDRESSES. All or nothing."""
        addresses = list(addresses)
        return self._run(_vxlan.set_remotes, self._ipr, name, addresses)

    def vxlan_remotes(self, name: str) -> list[str]:
        """The flood list of the classic VXLAN device NAME."""
        return self._run(_vxlan.remotes, self._ipr, name)

    def vxlan_fdb_add(self, name: str, mac: str, remote: str) -> None:
        """A static entry MAC -> REMOTE in NAME's FDB (replaces a learned or older one)."""
        return self._run(_vxlan.fdb_add, self._ipr, name, mac, remote)

    def vxlan_fdb_delete(self, name: str, mac: str) -> bool:
        """Remove MAC from NAME's FDB; False if it was not there."""
        return self._run(_vxlan.fdb_delete, self._ipr, name, mac)

    def vxlan_fdb_list(self, name: str) -> dict[str, str]:
        """MAC -> remote of NAME's FDB, learned and static (not the flood list)."""
        return self._run(_vxlan.fdb_list, self._ipr, name)

    # ---- the underlay ----------------------------------------------------------------------

    def host_addresses(self) -> set[str]:
        """Every IPv4 and IPv6 address configured in this network namespace (loopback and
        link-local ones included), in canonical form."""

        def work() -> set[str]:
            with _kernel("list the addresses of this host"):
                msgs = list(self._ipr.addr("dump"))
            out = set()
            for m in msgs:
                a = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
                if a:
                    out.add(str(ipaddress.ip_address(a)))
            return out

        return self._run(work)

    def underlay_mtu(self, address: str) -> int:
        """The MTU of the interface that owns ADDRESS (a local address), or else of the one the
        route to ADDRESS leaves by (a route's own mtu, when smaller, wins); 1500 if there is
        neither."""
        try:
            addr = ipaddress.ip_address(address)
        except (ValueError, TypeError):
            raise InvalidArgument("address", address, "is not an IPv4 or IPv6 address") from None

        def work() -> int:
            ipr = self._ipr
            with _kernel("list the addresses of this host"):
                msgs = list(ipr.addr("dump"))
            for m in msgs:
                a = m.get_attr("IFA_LOCAL") or m.get_attr("IFA_ADDRESS")
                if a and ipaddress.ip_address(a) == addr:
                    owner = _to_info(ipr.link("get", index=m["index"])[0])
                    return owner.mtu or DEFAULT_MTU
            try:
                routes = ipr.route("get", dst=str(addr))
            except NetlinkError as exc:
                if exc.code in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENODEV,
                                errno.EINVAL, errno.ESRCH):
                    return DEFAULT_MTU
                raise translate(exc, f"look up the route to {addr}") from exc
            for r in routes:
                oif = r.get_attr("RTA_OIF")
                if not oif:
                    continue
                mtu = _to_info(ipr.link("get", index=oif)[0]).mtu or DEFAULT_MTU
                metrics = r.get_attr("RTA_METRICS")
                route_mtu = metrics.get_attr("RTAX_MTU") if metrics is not None else None
                return min(mtu, route_mtu) if route_mtu else mtu
            return DEFAULT_MTU

        return self._run(work)

