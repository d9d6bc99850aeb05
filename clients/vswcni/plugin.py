"""ADD, DEL and CHECK: the container's veth port on the configured bridge, through vswitchd's
API. The port's labels remember the container, so DEL finds it by name after any restart and
never removes another container's port."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import TypeVar

from vswapi import errors as vsw
from vswapi import switch_pb2 as pb
from vswapi.controller import Switch
from vswcni import ipam
from vswcni.netconf import NetConf
from vswcni.spec import (
    CHECK_FAILED,
    INCOMPATIBLE_VERSION,
    INVALID_NETWORK_CONFIG,
    PORT_NAME_TAKEN,
    SWITCH_REFUSED,
    TRY_AGAIN_LATER,
    UNKNOWN_CONTAINER,
    CniError,
    Env,
    Ip,
    Result,
    version_key,
)

CONTAINER_ID = "cni.container_id"
NETWORK = "cni.network"
IFNAME = "cni.ifname"
# Kubernetes passes the pod in CNI_ARGS; kept as labels so `vswctl show` tells whose port it is
_K8S_ARGS = {"K8S_POD_NAMESPACE": "k8s.pod_namespace", "K8S_POD_NAME": "k8s.pod_name"}
_DEFAULT_ROUTES = ("0.0.0.0/0", "::/0")
T = TypeVar("T")


def port_name(env: Env, network: str) -> str:
    """'vc' + the container ID's first 8 characters + 5 hex digits of a hash of (network,
    container, interface): 15 characters, the same at every call, distinct for each of the
    container's interfaces and networks, and recognisable next to `podman ps`."""
    digest = hashlib.sha256(f"{network}/{env.container_id}/{env.ifname}".encode()).hexdigest()
    head = "".join(c for c in env.container_id if c.isalnum())[:8]
    return f"vc{head}{digest[:15 - 2 - len(head)]}"


def container_mac(env: Env, network: str) -> str:
    """A stable, locally administered unicast MAC for the container's interface."""
    digest = hashlib.sha256(f"mac/{network}/{env.container_id}/{env.ifname}".encode()).digest()
    return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))


def _refused(exc: vsw.VswError, what: str) -> CniError:
    if isinstance(exc, vsw.Unavailable | vsw.DeadlineExceeded):
        return CniError(TRY_AGAIN_LATER, f"{what}: vswitchd is not answering", exc.details)
    if isinstance(exc, vsw.InvalidArgument):  # a value of the network configuration
        return CniError(INVALID_NETWORK_CONFIG, f"{what}: {exc.details}", exc.field)
    return CniError(SWITCH_REFUSED, f"{what}: {exc.details}", exc.code.name)


def _call(what: str, fn: Callable[[], T]) -> T:
    try:
        return fn()
    except vsw.VswError as exc:
        raise _refused(exc, what) from None


def _ours(port: pb.Port, env: Env, conf: NetConf) -> bool:
    return (port.labels.get(CONTAINER_ID) == env.container_id
            and port.labels.get(IFNAME) == env.ifname
            and port.labels.get(NETWORK) == conf.name)


def _find_port(sw: Switch, conf: NetConf, name: str) -> pb.Port | None:
    try:
        return sw.get_port(conf.bridge, name)
    except vsw.NotFound:
        return None  # no such port, or no such bridge
    except vsw.VswError as exc:
        raise _refused(exc, f"look up port {name}") from None


def _gateways(result: Result) -> list[str]:
    """The bridge addresses isGateway asks for: each IP's gateway with the IP's prefix."""
    out = []
    for ip in result.ips:
        if not ip.gateway:
            raise CniError(INVALID_NETWORK_CONFIG,
                           f"isGateway: the IPAM result gives {ip.address} no gateway")
        prefix = ipaddress.ip_interface(ip.address).network.prefixlen
        out.append(f"{ip.gateway}/{prefix}")
    return out


def _default_route(conf: NetConf, result: Result) -> str:
    """The container's default gateway: a default route of the IPAM result (its gw, or the
    IP's gateway), or the gateway itself when isDefaultGateway. Other routes are refused: a
    port takes a default route only."""
    gateway = ""
    for route in result.routes:
        dst = route.get("dst", "")
        if dst not in _DEFAULT_ROUTES:
            raise CniError(INVALID_NETWORK_CONFIG,
                           f"ipam.routes: {dst!r}: only default routes (0.0.0.0/0, ::/0) are "
                           "supported")
        gw = route.get("gw") or next((ip.gateway for ip in result.ips if ip.gateway and
                                      (":" in ip.gateway) == (":" in dst)), "")
        gateway = gateway or gw
    if not gateway and conf.is_default_gateway:
        gateway = next((ip.gateway for ip in result.ips if ip.gateway), "")
    return gateway


def _ensure_bridge(sw: Switch, conf: NetConf, gateways: list[str]) -> None:
    """The bridge, made with the gateway addresses and NAT if it is missing; an existing one
    gets the gateway addresses it lacks (as the reference bridge plugin adds them) and NAT
    when ipMasq asks. Compare-and-swap on the bridge's revision: concurrent ADDs each see
    the other's change and go again."""
    for _attempt in range(5):
        br = _call(f"create bridge {conf.bridge}", lambda: sw.create_bridge(
            conf.bridge, datapath=conf.datapath or 0, addresses=gateways, nat=conf.ip_masq,
            may_exist=True))
        have = {str(ipaddress.ip_interface(a)) for a in br.addresses}
        missing = [g for g in gateways if str(ipaddress.ip_interface(g)) not in have]
        nat = True if conf.ip_masq and not br.nat else None
        if not missing and nat is None:
            return
        try:
            sw.update_bridge(conf.bridge, nat=nat, expected_revision=br.revision,
                             addresses=[*br.addresses, *missing] if missing else None)
            return
        except vsw.Aborted:
            continue  # changed meanwhile (another ADD): look again
        except vsw.VswError as exc:
            raise _refused(exc, f"give bridge {conf.bridge} the gateway "
                                f"{', '.join(missing)}" if missing else
                           f"enable NAT on bridge {conf.bridge}") from None
    raise CniError(TRY_AGAIN_LATER, f"bridge {conf.bridge} kept changing meanwhile")


def add(sw: Switch, conf: NetConf, env: Env, environ: dict[str, str]) -> Result:
    name = port_name(env, conf.name)
    existing = _find_port(sw, conf, name)
    if existing is not None:
        whose = existing.labels.get(CONTAINER_ID, "nobody (not made by vswitchd-cni)")
        raise CniError(PORT_NAME_TAKEN if not _ours(existing, env, conf) else SWITCH_REFUSED,
                       f"port {name} already exists on bridge {conf.bridge}",
                       f"it belongs to container {whose}")
    result = ipam.delegate("ADD", conf, env, environ) if conf.ipam else None
    try:
        ips = result.ips if result else []
        gateway = _default_route(conf, result) if result else ""
        if result is not None and not ips:
            raise CniError(INVALID_NETWORK_CONFIG, "ipam: the IPAM plugin handed out no address")
        _ensure_bridge(sw, conf, _gateways(result) if result and conf.is_gateway else [])
        mac = conf.mac or container_mac(env, conf.name)
        labels = {CONTAINER_ID: env.container_id, NETWORK: conf.name, IFNAME: env.ifname,
                  **{_K8S_ARGS[k]: v for k, v in env.args if k in _K8S_ARGS and v}}
        _call(f"add port {name} to bridge {conf.bridge}", lambda: sw.create_port(
            conf.bridge, name, type="veth", netns=env.netns, peer_name=env.ifname,
            addresses=[ip.address for ip in ips], mac=mac, mtu=conf.mtu, vlan=conf.vlan,
            gateway=gateway, labels=labels))
    except CniError:
        if result is not None:  # give the addresses back: nothing holds them
            ipam.delegate("DEL", conf, env, environ)
        raise
    routes = [{"dst": "::/0" if ":" in gateway else "0.0.0.0/0", "gw": gateway}] \
        if gateway else []
    dns = (result.dns if result else {}) or conf.dns
    return Result(
        interfaces=[{"name": name}, {"name": env.ifname, "mac": mac, "sandbox": env.netns}],
        ips=[Ip(ip.address, ip.gateway, 1) for ip in ips], routes=routes, dns=dns)


def delete(sw: Switch, conf: NetConf, env: Env, environ: dict[str, str]) -> None:
    """Idempotent: no port (never made, deleted before, or its namespace went and the daemon
    forgot it) is success. The addresses go back to IPAM only once the port is gone."""
    name = port_name(env, conf.name)
    for _attempt in range(3):
        port = _find_port(sw, conf, name)
        if port is None or not _ours(port, env, conf):
            break  # gone, or another container's port that happens to share the name
        try:
            sw.delete_port(conf.bridge, name, if_exists=True, expected_revision=port.revision)
            break
        except vsw.Aborted:
            continue  # it changed meanwhile: look again
        except vsw.VswError as exc:
            raise _refused(exc, f"delete port {name}") from None
    else:
        raise CniError(TRY_AGAIN_LATER, f"delete port {name}: it kept changing meanwhile")
    if conf.ipam:
        ipam.delegate("DEL", conf, env, environ)


def check(sw: Switch, conf: NetConf, env: Env, environ: dict[str, str]) -> None:
    if version_key(conf.version) < (0, 4, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, not "
                                             f"{conf.version}")
    if conf.prev_result is None:
        raise CniError(INVALID_NETWORK_CONFIG, "prevResult: CHECK needs the result of ADD")
    name = port_name(env, conf.name)
    port = _find_port(sw, conf, name)
    if port is None or not _ours(port, env, conf):
        raise CniError(UNKNOWN_CONTAINER,
                       f"container {env.container_id} has no port {name} on bridge "
                       f"{conf.bridge}")
    if port.state != "up":
        raise CniError(CHECK_FAILED, f"port {name} is {port.state or 'not up'}")
    if port.netns != env.netns or port.peer_name != env.ifname:
        raise CniError(CHECK_FAILED, f"port {name} leads to {port.peer_name} in {port.netns}, "
                                     f"not {env.ifname} in {env.netns}")
    have = {str(ipaddress.ip_interface(a)) for a in port.addresses}
    for ip in conf.prev_result.ips:
        if str(ipaddress.ip_interface(ip.address)) not in have:
            raise CniError(CHECK_FAILED, f"port {name} lacks the address {ip.address}",
                           f"it has: {', '.join(port.addresses) or 'none'}")
    if conf.ipam:
        ipam.delegate("CHECK", conf, env, environ)
