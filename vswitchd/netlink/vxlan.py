"""VXLAN devices and their forwarding database, over netlink (pyroute2).

Two flavours:

- external (the eBPF datapath): a collect_md device with a VNI filter (IFLA_VXLAN_VNIFILTER),
  learning off; the VNIs it terminates are programmed with RTM_NEWTUNNEL. Several such devices
  share one UDP port, each with its own VNIs (a VNI another device holds is refused).
- classic (kernel-datapath bridges): a device with one VNI (`id N`), learning on; head-end
  replication and static remote MACs are entries of its own FDB (NTF_SELF, NDA_DST).

A classic device cannot come up on a UDP port where external VNI-filter devices are up, nor
the other way round (EADDRINUSE); a plain external device without a VNI filter is one per port.

pyroute2 0.9.7 knows neither IFLA_VXLAN_VNIFILTER (30) nor the tunnel messages, so the two
message classes below carry them: `vxlan_link_msg` (RTM_NEWLINK for a VXLAN device, and a
decoder of its IFLA_INFO_DATA) and `tunnel_msg` (RTM_NEWTUNNEL/DELTUNNEL/GETTUNNEL).
The functions here take the caller's IPRoute and run on its thread (Links' worker).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

from pyroute2.iproute import IPRoute
from pyroute2.netlink import (
    NLM_F_ACK,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REQUEST,
    nla,
    nlmsg,
)
from pyroute2.netlink.exceptions import NetlinkError

from vswitchd.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from vswitchd.netlink._util import IFF_UP, _get, _kernel, _quiet, _require, _to_info
from vswitchd.netlink.errors import translate
from vswitchd.netlink.types import LinkInfo, VxlanInfo

RTM_NEWLINK = 16
RTM_NEWTUNNEL = 120
RTM_DELTUNNEL = 121
RTM_GETTUNNEL = 122
NTF_SELF = 0x02
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
ZERO_MAC = "00:00:00:00:00:00"
VNI_MAX = (1 << 24) - 1


# ---- message classes pyroute2 0.9.7 lacks --------------------------------------------------


class vxlan_data(nla):
    """IFLA_INFO_DATA of a VXLAN device: the attributes we set or read (include/uapi/linux/
    if_link.h; unknown ones decode as UNKNOWN)."""

    prefix = "IFLA_VXLAN_"
    nla_map = (
        (1, "IFLA_VXLAN_ID", "uint32"),
        (2, "IFLA_VXLAN_GROUP", "ip4addr"),
        (4, "IFLA_VXLAN_LOCAL", "ip4addr"),
        (7, "IFLA_VXLAN_LEARNING", "uint8"),
        (15, "IFLA_VXLAN_PORT", "be16"),
        (16, "IFLA_VXLAN_GROUP6", "ip6addr"),
        (17, "IFLA_VXLAN_LOCAL6", "ip6addr"),
        (25, "IFLA_VXLAN_COLLECT_METADATA", "uint8"),
        (30, "IFLA_VXLAN_VNIFILTER", "uint8"),
    )


class vxlan_link_msg(nlmsg):
    """struct ifinfomsg + the attributes of a VXLAN device (IFLA_LINKINFO with our data)."""

    prefix = "IFLA_"
    fields = (
        ("family", "B"),
        ("__align", "x"),
        ("ifi_type", "H"),
        ("index", "i"),
        ("flags", "I"),
        ("change", "I"),
    )
    nla_map = (
        (3, "IFLA_IFNAME", "asciiz"),
        (4, "IFLA_MTU", "uint32"),
        (18, "IFLA_LINKINFO", "linkinfo"),
    )

    class linkinfo(nla):
        prefix = "IFLA_INFO_"
        nla_map = (
            (1, "IFLA_INFO_KIND", "asciiz"),
            (2, "IFLA_INFO_DATA", "vxlan_data"),
        )

        vxlan_data = vxlan_data


class tunnel_msg(nlmsg):
    """struct tunnel_msg {u8 family; u8 flags; u16 reserved2; u32 ifindex;} + VNI filter
    entries (RTM_NEWTUNNEL / RTM_DELTUNNEL / RTM_GETTUNNEL, family AF_BRIDGE)."""

    prefix = "VXLAN_VNIFILTER_"
    fields = (
        ("family", "B"),
        ("flags", "B"),
        ("reserved2", "H"),
        ("ifindex", "I"),
    )
    nla_map = ((1, "VXLAN_VNIFILTER_ENTRY", "entry | nested"),)

    class entry(nla):
        prefix = "VXLAN_VNIFILTER_ENTRY_"
        nla_map = (
            (1, "VXLAN_VNIFILTER_ENTRY_START", "uint32"),
            (2, "VXLAN_VNIFILTER_ENTRY_END", "uint32"),
            (3, "VXLAN_VNIFILTER_ENTRY_GROUP", "ip4addr"),
            (4, "VXLAN_VNIFILTER_ENTRY_GROUP6", "ip6addr"),
        )


def _tunnel_policy(ipr: IPRoute) -> None:
    """Teach this IPRoute's parser (a per-socket copy of pyroute2's map) the tunnel replies."""
    ipr.marshal.msg_map[RTM_NEWTUNNEL] = tunnel_msg


def _request(ipr: IPRoute, msg: Any, msg_type: int, flags: int) -> list[Any]:
    """Send MSG and collect the replies. (IPRoute.nlm_request of pyroute2 0.9.7 fails on a
    missing status key; this is the path IPRoute's own sync methods take.)"""
    return list(ipr._run_force_sync(ipr.asyncore.nlm_request, msg, msg_type, flags))


# ---- reading devices ---------------------------------------------------------------------


def info_of(msg: Any) -> VxlanInfo | None:
    """The VXLAN facts of a link message from pyroute2 (None when it is no VXLAN device)."""
    own = vxlan_link_msg(msg.data, offset=msg.offset)
    own.decode()
    linkinfo = own.get_attr("IFLA_LINKINFO")
    if linkinfo is None or linkinfo.get_attr("IFLA_INFO_KIND") != "vxlan":
        return None
    data = linkinfo.get_attr("IFLA_INFO_DATA")
    if data is None:
        return None
    local = data.get_attr("IFLA_VXLAN_LOCAL") or data.get_attr("IFLA_VXLAN_LOCAL6") or ""
    return VxlanInfo(
        name=msg.get_attr("IFLA_IFNAME"),
        ifindex=msg["index"],
        vni=data.get_attr("IFLA_VXLAN_ID") or 0,
        external=bool(data.get_attr("IFLA_VXLAN_COLLECT_METADATA")),
        vnifilter=bool(data.get_attr("IFLA_VXLAN_VNIFILTER")),
        dstport=data.get_attr("IFLA_VXLAN_PORT") or 0,
        local=str(ipaddress.ip_address(local)) if local else "",
        learning=bool(data.get_attr("IFLA_VXLAN_LEARNING")),
        up=bool(msg["flags"] & IFF_UP),
    )


def info(ipr: IPRoute, name: str) -> VxlanInfo | None:
    """NAME's VXLAN facts; None when there is no such interface. FailedPrecondition when NAME is
    an interface but no VXLAN device."""
    msg = _get(ipr, name)
    if msg is None:
        return None
    found = info_of(msg)
    if found is None:
        raise FailedPrecondition(f"interface {name} is not a VXLAN device")
    return found


def _all(ipr: IPRoute) -> list[VxlanInfo]:
    with _kernel("list VXLAN devices"):
        msgs = list(ipr.link("dump"))
    return [i for i in (info_of(m) for m in msgs) if i is not None]


def _filter_vnis(ipr: IPRoute, ifindex: int, name: str) -> list[int]:
    """The VNIs in the filter of the VNI-filter device IFINDEX (RTM_GETTUNNEL; the kernel
    reports consecutive VNIs as one START..END entry)."""
    _tunnel_policy(ipr)
    req = tunnel_msg()
    req["family"] = socket.AF_BRIDGE
    req["ifindex"] = ifindex
    with _kernel(f"read the VNI filter of {name}", name=name):
        replies = _request(ipr, req, RTM_GETTUNNEL, NLM_F_REQUEST | NLM_F_DUMP)
    out: list[int] = []
    for m in replies:
        if m.get("event") != "RTM_NEWTUNNEL" or m["ifindex"] != ifindex:
            continue
        for entry in m.get_attrs("VXLAN_VNIFILTER_ENTRY"):
            start = entry.get_attr("VXLAN_VNIFILTER_ENTRY_START")
            end = entry.get_attr("VXLAN_VNIFILTER_ENTRY_END") or start
            if start:
                out.extend(range(start, end + 1))
    return sorted(out)


def vnis(ipr: IPRoute, name: str) -> list[int]:
    """The VNIs NAME terminates: its VNI filter, or the VNI of a classic device (none for an
    external device without a filter, which takes every VNI)."""
    dev = info(ipr, name)
    if dev is None:
        raise NotFound(f"interface {name} does not exist")
    if dev.vnifilter:
        return _filter_vnis(ipr, dev.ifindex, name)
    return [dev.vni] if not dev.external else []


def _vni_change(ipr: IPRoute, ifindex: int, vni: int, msg_type: int) -> None:
    req = tunnel_msg()
    req["family"] = socket.AF_BRIDGE
    req["ifindex"] = ifindex
    req["attrs"] = [["VXLAN_VNIFILTER_ENTRY", {"attrs": [["VXLAN_VNIFILTER_ENTRY_START", vni]]}]]
    _request(ipr, req, msg_type, NLM_F_REQUEST | NLM_F_ACK)


# ---- creating devices --------------------------------------------------------------------


def _describe(dev: VxlanInfo) -> str:
    if not dev.external:
        return f"classic VXLAN device {dev.name} (VNI {dev.vni}, kernel datapath)"
    if not dev.vnifilter:
        return f"external VXLAN device {dev.name} without a VNI filter"
    return f"external VXLAN device {dev.name} with a VNI filter (eBPF datapath)"


def _port_clash(ipr: IPRoute, name: str, dstport: int, external: bool) -> FailedPrecondition:
    """Why NAME (EXTERNAL or classic) could not come up on DSTPORT (EADDRINUSE)."""
    mine = ("an external VXLAN device with a VNI filter" if external
            else "a classic VXLAN device")
    others = [d for d in _all(ipr)
              if d.name != name and d.up and d.dstport == dstport
              and (d.external and d.vnifilter) != external]
    if others:
        holders = ", ".join(_describe(d) for d in others)
        return FailedPrecondition(
            f"UDP port {dstport} is in use by {holders}; {mine} ({name}) cannot share it: "
            f"use another UDP port or remove {'that device' if len(others) == 1 else 'them'}")
    return FailedPrecondition(
        f"UDP port {dstport} is in use by a socket that is not a VXLAN device; "
        f"{mine} ({name}) cannot use it: choose another UDP port")


def _vni_holder(ipr: IPRoute, name: str, vni: int, dstport: int) -> AlreadyExists:
    """Why VNI could not be given to NAME: the device that already terminates it."""
    for d in _all(ipr):
        if d.name == name or d.dstport != dstport:
            continue
        held = _filter_vnis(ipr, d.ifindex, d.name) if d.vnifilter else [d.vni]
        if vni in held:
            return AlreadyExists(f"VNI {vni} is already terminated by VXLAN device {d.name} "
                                 f"on UDP port {dstport}")
    return AlreadyExists(f"VNI {vni} is already in use by another VXLAN device on UDP port "
                         f"{dstport}")


def _check_args(vni: int, local: str, dstport: int) -> None:
    if isinstance(vni, bool) or not isinstance(vni, int) or not 1 <= vni <= VNI_MAX:
        raise InvalidArgument("vni", vni, f"must be an integer from 1 to {VNI_MAX}")
    if isinstance(dstport, bool) or not isinstance(dstport, int) or not 1 <= dstport <= 65535:
        raise InvalidArgument("dstport", dstport, "must be a UDP port from 1 to 65535")
    if local:
        try:
            addr = ipaddress.ip_address(local)
        except ValueError:
            raise InvalidArgument("local", local, "is not an IPv4 or IPv6 address") from None
        if addr.is_multicast or addr.is_unspecified:
            raise InvalidArgument("local", local, "must be a unicast address")


def create(ipr: IPRoute, name: str, *, vni: int, local: str = "", dstport: int = 4789,
           external: bool = True, mtu: int | None = None) -> LinkInfo:
    """See Links.create_vxlan."""
    _check_args(vni, local, dstport)
    if _get(ipr, name) is not None:
        raise AlreadyExists(f"interface {name} already exists")
    data: list[list[Any]] = [["IFLA_VXLAN_PORT", dstport]]
    if external:
        data += [["IFLA_VXLAN_COLLECT_METADATA", 1], ["IFLA_VXLAN_VNIFILTER", 1],
                 ["IFLA_VXLAN_LEARNING", 0]]
    else:
        data += [["IFLA_VXLAN_ID", vni], ["IFLA_VXLAN_LEARNING", 1]]
    if local:
        addr = ipaddress.ip_address(local)
        data.append(["IFLA_VXLAN_LOCAL" if addr.version == 4 else "IFLA_VXLAN_LOCAL6",
                     str(addr)])
    req = vxlan_link_msg()
    req["family"] = socket.AF_UNSPEC
    attrs: list[list[Any]] = [["IFLA_IFNAME", name]]
    if mtu is not None:
        attrs.append(["IFLA_MTU", mtu])
    attrs.append(["IFLA_LINKINFO", {"attrs": [["IFLA_INFO_KIND", "vxlan"],
                                              ["IFLA_INFO_DATA", {"attrs": data}]]}])
    req["attrs"] = attrs
    kind = "external VXLAN device" if external else "VXLAN device"
    action = f"create {kind} {name} (VNI {vni}, UDP port {dstport})"
    try:
        _request(ipr, req, RTM_NEWLINK,
                 NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
    except NetlinkError as exc:
        if exc.code == errno.EEXIST:
            if _get(ipr, name) is not None:
                raise AlreadyExists(f"interface {name} already exists") from exc
            raise _vni_holder(ipr, name, vni, dstport) from exc
        if exc.code in (errno.EINVAL, errno.ERANGE) and mtu is not None:
            raise InvalidArgument("mtu", mtu, f"rejected by the kernel ({action}: "
                                  f"{exc.args[1] if len(exc.args) > 1 else exc})") from exc
        raise translate(exc, action, name=name) from exc
    try:
        index = _require(ipr, name)["index"]
        if external:
            try:
                _vni_change(ipr, index, vni, RTM_NEWTUNNEL)
            except NetlinkError as exc:
                if exc.code == errno.EEXIST:
                    raise _vni_holder(ipr, name, vni, dstport) from exc
                raise translate(exc, f"add VNI {vni} to the VNI filter of {name}",
                                name=name) from exc
        try:
            ipr.link("set", index=index, state="up")
        except NetlinkError as exc:
            if exc.code == errno.EADDRINUSE:
                raise _port_clash(ipr, name, dstport, external) from exc
            raise translate(exc, f"bring {name} up", name=name) from exc
        return _to_info(_require(ipr, name))
    except BaseException:
        _quiet(ipr.link, "del", ifname=name)
        raise


# ---- FDB of classic devices --------------------------------------------------------------


def _classic(ipr: IPRoute, name: str) -> VxlanInfo:
    dev = info(ipr, name)
    if dev is None:
        raise NotFound(f"interface {name} does not exist")
    if dev.external:
        raise FailedPrecondition(
            f"VXLAN device {name} is external (collect_md): its remotes are set per packet by "
            "the eBPF datapath, not kept in its FDB")
    return dev


def _remote(value: str, field: str = "remote") -> str:
    try:
        addr = ipaddress.ip_address(value)
    except (ValueError, TypeError):
        raise InvalidArgument(field, value, "is not an IPv4 or IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise InvalidArgument(field, value, "must be a unicast address of a remote VTEP")
    return str(addr)


def _mac(value: str) -> str:
    mac = value.lower().replace("-", ":") if isinstance(value, str) else ""
    parts = mac.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise InvalidArgument("mac", value, "is not a MAC address (like 02:00:00:00:00:01)")
    if mac == ZERO_MAC:
        raise InvalidArgument("mac", value, "the all-zeros MAC is the flood list of the device "
                              "(set it with its remotes)")
    if int(parts[0], 16) & 1:
        raise InvalidArgument("mac", value, "must be a unicast MAC (broadcast and multicast "
                              "frames go to every remote of the flood list)")
    return mac


def _same_family(dev: VxlanInfo, remote: str, field: str) -> None:
    """A remote must be of the family of the device's local address (the kernel's EAFNOSUPPORT
    would not say which)."""
    if dev.local and ipaddress.ip_address(dev.local).version != \
            ipaddress.ip_address(remote).version:
        raise InvalidArgument(field, remote, f"VXLAN device {dev.name} sends from "
                              f"{dev.local}: its remotes must be of the same address family")


def _entries(ipr: IPRoute, dev: VxlanInfo) -> list[tuple[str, str]]:
    """(mac, remote) of the device's own FDB (NTF_SELF entries with a destination; a bridge's
    entries about the device as its port carry NDA_MASTER and are left out)."""
    with _kernel(f"list the FDB of {dev.name}", name=dev.name):
        msgs = list(ipr.fdb("dump"))
    out = []
    for m in msgs:
        if m["ifindex"] != dev.ifindex or m.get_attr("NDA_MASTER"):
            continue
        dst = m.get_attr("NDA_DST")
        mac = (m.get_attr("NDA_LLADDR") or "").lower()
        if dst and mac:
            out.append((mac, str(ipaddress.ip_address(dst))))
    return out


def remotes(ipr: IPRoute, name: str) -> list[str]:
    dev = _classic(ipr, name)
    return sorted({r for mac, r in _entries(ipr, dev) if mac == ZERO_MAC},
                  key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a)))


def set_remotes(ipr: IPRoute, name: str, addresses: list[str]) -> None:
    """Make the flood list (all-zeros entries) of NAME exactly ADDRESSES. All or nothing:
    missing ones are appended first, then extra ones removed; a failure undoes what was done."""
    want = [_remote(a, "remotes") for a in addresses]
    dev = _classic(ipr, name)
    for r in want:
        _same_family(dev, r, "remotes")
    have = {r for mac, r in _entries(ipr, dev) if mac == ZERO_MAC}
    added: list[str] = []
    removed: list[str] = []
    kw = {"ifindex": dev.ifindex, "lladdr": ZERO_MAC, "flags": NTF_SELF,
          "state": NUD_PERMANENT | NUD_NOARP}
    try:
        for r in dict.fromkeys(want):
            if r in have:
                continue
            with _kernel(f"add remote {r} to VXLAN device {name}", name=name,
                         field="remotes", value=r):
                ipr.fdb("append", dst=r, **kw)
            added.append(r)
        for r in sorted(have - set(want)):
            with _kernel(f"remove remote {r} from VXLAN device {name}", name=name):
                ipr.fdb("del", dst=r, **kw)
            removed.append(r)
    except BaseException:
        for r in added:
            _quiet(ipr.fdb, "del", dst=r, **kw)
        for r in removed:
            _quiet(ipr.fdb, "append", dst=r, **kw)
        raise


def fdb_add(ipr: IPRoute, name: str, mac: str, remote: str) -> None:
    """MAC lives behind REMOTE, for good (replaces a learned or older static entry)."""
    mac = _mac(mac)
    remote = _remote(remote)
    dev = _classic(ipr, name)
    _same_family(dev, remote, "remote")
    with _kernel(f"add FDB entry {mac} -> {remote} to VXLAN device {name}", name=name,
                 field="remote", value=remote):
        ipr.fdb("replace", ifindex=dev.ifindex, lladdr=mac, dst=remote, flags=NTF_SELF,
                state=NUD_PERMANENT | NUD_NOARP)


def fdb_delete(ipr: IPRoute, name: str, mac: str) -> bool:
    """Remove MAC (every remote of it) from NAME's FDB. False if it has none."""
    mac = _mac(mac)
    dev = _classic(ipr, name)
    if not any(m == mac for m, _r in _entries(ipr, dev)):
        return False
    try:
        ipr.fdb("del", ifindex=dev.ifindex, lladdr=mac, flags=NTF_SELF,
                state=NUD_PERMANENT | NUD_NOARP)
    except NetlinkError as exc:
        if exc.code in (errno.ENOENT, errno.ENODEV):
            return False
        raise translate(exc, f"delete FDB entry {mac} from VXLAN device {name}",
                        name=name) from exc
    return True


def fdb_list(ipr: IPRoute, name: str) -> dict[str, str]:
    """MAC -> remote of NAME's FDB, learned and static (not the flood list)."""
    dev = _classic(ipr, name)
    out: dict[str, str] = {}
    for mac, r in _entries(ipr, dev):
        if mac != ZERO_MAC:
            out.setdefault(mac, r)
    return out
