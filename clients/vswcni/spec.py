"""The CNI specification's side of the plugin: the versions it speaks, the error codes, the
CNI_* environment, and results in the version the runtime asked for.

Results of 0.3.0 .. 1.0.0 share one shape (interfaces, ips, routes, dns); before 1.0.0 every
IP also carries "version" ("4" or "6"). Versions before 0.3.0 had another result type and are
refused with code 1, as the specification asks.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CURRENT_VERSION = "1.0.0"

# The specification's well-known error codes (1-99); 100 and up are this plugin's own.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
SWITCH_REFUSED = 100      # vswitchd refused the change (its message says why)
PORT_NAME_TAKEN = 101     # the container's port name is held by another container's port
CHECK_FAILED = 102        # CHECK found the container's port not as ADD left it
INTERNAL = 199            # a bug of the plugin's: the message says what failed

COMMANDS = ("ADD", "DEL", "CHECK", "VERSION")
# The specification's container ID: alphanumerics, then also underscore, period and hyphen.
_CONTAINER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


class CniError(Exception):
    """A failure reported to the runtime as the specification's error result."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def result(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in version.split("."))
    except ValueError:
        return (0,)


def check_version(version: object) -> str:
    if not isinstance(version, str) or not version:
        raise CniError(DECODE_FAILURE, "cniVersion: missing from the network configuration")
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION,
                       f"cniVersion {version!r} is not supported",
                       f"supported versions: {', '.join(SUPPORTED_VERSIONS)}")
    return version


@dataclass(frozen=True)
class Env:
    """The CNI_* variables of one invocation."""

    command: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: tuple[tuple[str, str], ...] = ()
    path: tuple[str, ...] = ()

    @classmethod
    def read(cls, environ: dict[str, str]) -> Env:
        """The variables COMMAND needs, checked (code 4 names the one at fault)."""
        command = environ.get("CNI_COMMAND", "")
        if command not in COMMANDS:
            raise CniError(INVALID_ENVIRONMENT,
                           f"CNI_COMMAND: {command!r} is not one of {', '.join(COMMANDS)}")
        if command == "VERSION":
            return cls(command)
        need = {"CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"}
        if command != "DEL":  # DEL may come after the namespace is gone
            need.add("CNI_NETNS")
        for name in sorted(need):
            if not environ.get(name):
                raise CniError(INVALID_ENVIRONMENT, f"{name}: not set")
        cid = environ["CNI_CONTAINERID"]
        if not _CONTAINER_ID_RE.match(cid):
            raise CniError(INVALID_ENVIRONMENT,
                           f"CNI_CONTAINERID: {cid!r} is not a container ID (letters, digits, "
                           "then also _ . -)")
        return cls(command, cid, environ.get("CNI_NETNS", ""), environ["CNI_IFNAME"],
                   _args(environ.get("CNI_ARGS", "")),
                   tuple(p for p in environ["CNI_PATH"].split(":") if p))


def _args(text: str) -> tuple[tuple[str, str], ...]:
    """CNI_ARGS: "K=V;K=V" (the runtime's extra arguments, e.g. K8S_POD_NAME)."""
    out = []
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {item!r} is not KEY=VALUE")
        out.append((key, value))
    return tuple(out)


@dataclass
class Ip:
    address: str          # CIDR
    gateway: str = ""
    interface: int | None = None  # index into the result's interfaces


@dataclass
class Result:
    """A result in the 1.0.0 model; `render` writes it in an older version's shape."""

    interfaces: list[dict[str, str]]
    ips: list[Ip]
    routes: list[dict[str, str]]
    dns: dict[str, Any]

    def render(self, version: str) -> dict[str, Any]:
        ips = []
        for ip in self.ips:
            item: dict[str, Any] = {"address": ip.address}
            if version_key(version) < (1, 0, 0):
                item["version"] = str(ipaddress.ip_interface(ip.address).version)
            if ip.gateway:
                item["gateway"] = ip.gateway
            if ip.interface is not None:
                item["interface"] = ip.interface
            ips.append(item)
        out: dict[str, Any] = {"cniVersion": version, "interfaces": self.interfaces, "ips": ips}
        if self.routes:
            out["routes"] = self.routes
        if self.dns:
            out["dns"] = self.dns
        return out

    @classmethod
    def parse(cls, data: object, what: str) -> Result:
        """A result another plugin printed (IPAM's, or prevResult), of any supported version."""
        if not isinstance(data, dict):
            raise CniError(DECODE_FAILURE, f"{what}: not a JSON object")
        try:
            ips = [Ip(str(i["address"]), str(i.get("gateway", "")), i.get("interface"))
                   for i in data.get("ips") or []]
            for ip in ips:
                ipaddress.ip_interface(ip.address)
            routes = [dict(r) for r in data.get("routes") or []]
            return cls(list(data.get("interfaces") or []), ips, routes, dict(data.get("dns") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CniError(DECODE_FAILURE, f"{what}: not a CNI result ({exc})") from None
