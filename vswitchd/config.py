"""Daemon configuration: built-in defaults, an optional YAML file, command-line overrides.

The file is read with a safe loader; duplicate keys, unknown keys and wrong types are errors
that name the file, the line and the key (as Faucet's conf.py does for its schema).
"""

from __future__ import annotations

import dataclasses
import grp
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vswitchd.datapath.limits import Limits
from vswitchd.datapath.watch import MAX_WATCHERS
from vswitchd.events import DEFAULT_HISTORY
from vswitchd.model import DATAPATHS
from vswitchd.yamlfile import ConfigError, mapping, typed, where

if TYPE_CHECKING:  # imported where a file is parsed: without --config, never (issue 16)
    import yaml

__all__ = ["DATAPATHS", "ApiSettings", "Config", "ConfigError", "MetricsSettings",
           "PacketInSettings", "TcpListener", "WatchSettings", "load", "metrics_address",
           "override", "parse"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def metrics_address(address: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets) -> (host, port); ValueError saying what is wrong."""
    host, sep, port_text = address.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("must be HOST:PORT with a port in 1..65535 (e.g. 127.0.0.1:9476)")
    return host, int(port_text)


@dataclass
class TcpListener:
    """An optional TCP listener; TLS is mandatory on TCP, and so are client certificates unless
    unauthenticated_clients says explicitly that any client may connect."""

    address: str = ""          # host:port
    tls_cert: str = ""         # PEM server certificate chain
    tls_key: str = ""          # PEM private key
    tls_client_ca: str = ""    # clients must present a certificate signed by it
    unauthenticated_clients: bool = False  # no client certificates: anyone who connects rules
    # role -> certificate names (vswitchd.api.certnames): `CN=name`, `DNS:name`, `URI:uri`,
    # `IP:address`; a certificate that matches none may call health and reflection only
    roles: dict[str, list[str]] = field(default_factory=dict)


READER_SOCKET = "vswitchd-reader.sock"  # the reader socket's default name, beside `socket`


@dataclass
class ApiSettings:
    """`api:` who may use the API besides root on the admin socket, and the audit log."""

    reader_socket: str = ""  # "": READER_SOCKET in the admin socket's directory
    reader_group: str | int | None = None  # name or gid; None: no reader socket
    audit_log: str = ""  # a file (0600) that gets the audit lines too; "": the daemon log only


@dataclass
class WatchSettings:
    """`watch:`. rate_limit left out leaves the running value alone (see
    vswitchd.trace.ratelimit for how a declared value meets one set over the API)."""

    rate_limit: int | None = None  # watch events per second per CPU the datapath emits at most
    # watch streams open at once (1..the datapath's MAX_WATCHERS slots); read at start
    max_watchers: int = MAX_WATCHERS


@dataclass
class PacketInSettings:
    """`packet_in:`. rate_limit left out leaves the running value alone, as for watch."""

    rate_limit: int | None = None  # packet-ins per second per CPU the datapath sends at most


@dataclass
class EventSettings:
    """`events:` (the Subscribe API, vswitchd.events)."""

    history: int = DEFAULT_HISTORY  # events held for subscribers that resume (since_revision)


@dataclass
class MetricsSettings:
    """`metrics:` (Prometheus, vswitchd.metrics); the section absent = no metrics listener."""

    address: str = ""  # HOST:PORT of the /metrics listener, e.g. 127.0.0.1:9476


@dataclass
class Config:
    socket: str = "/run/vswitchd/vswitchd.sock"
    state_dir: str = "/var/lib/vswitchd"
    bpffs_dir: str = "/sys/fs/bpf/vswitchd"
    # compiled datapath programs by source, kernel and bcc: a restart with the same programs
    # does not compile (vswitchd.datapath.objfile)
    cache_dir: str = "/var/cache/vswitchd"
    default_datapath: str = "ebpf"
    fdb_aging_seconds: int = 300
    log_level: str = "info"
    tcp: TcpListener | None = None
    api: ApiSettings = field(default_factory=ApiSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    packet_in: PacketInSettings = field(default_factory=PacketInSettings)
    events: EventSettings = field(default_factory=EventSettings)
    metrics: MetricsSettings | None = None
    # `datapath:` the eBPF datapath's map sizes (vswitchd.datapath.limits), read at start
    datapath: Limits = field(default_factory=Limits)
    # Declared bridges, ports, FDB entries and flows (vswitchd.desired); None = the file has no
    # `bridges:` section and the daemon leaves declared state alone.
    bridges: dict | None = None
    # Where the values came from, for messages: key -> "FILE:LINE".
    origins: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def reader_socket(self) -> str | None:
        """The reader socket's path, None when there is none (api.reader_group not set)."""
        if self.api.reader_group is None:
            return None
        return self.api.reader_socket or os.path.join(os.path.dirname(self.socket),
                                                      READER_SOCKET)


_SCHEMA: dict[str, type] = {
    "socket": str,
    "state_dir": str,
    "bpffs_dir": str,
    "cache_dir": str,
    "default_datapath": str,
    "fdb_aging_seconds": int,
    "log_level": str,
    "tcp": dict,
    "api": dict,
    "watch": dict,
    "packet_in": dict,
    "events": dict,
    "metrics": dict,
    "datapath": dict,
    "bridges": dict,
}
_TCP_SCHEMA: dict[str, type] = {f.name: {"bool": bool, "str": str}.get(str(f.type), dict)
                                 for f in dataclasses.fields(TcpListener)}
_API_SCHEMA: dict[str, type] = {"reader_socket": str, "reader_group": object, "audit_log": str}
_WATCH_SCHEMA: dict[str, type] = {"rate_limit": int, "max_watchers": int}
_PACKET_IN_SCHEMA: dict[str, type] = {"rate_limit": int}
_EVENTS_SCHEMA: dict[str, type] = {"history": int}
_METRICS_SCHEMA: dict[str, type] = {"address": str}
_DATAPATH_SCHEMA: dict[str, type] = {f.name: int for f in dataclasses.fields(Limits)}
MAX_HISTORY = 10_000_000


def _check_values(cfg: Config) -> None:
    def origin(key: str) -> str:
        return cfg.origins.get(key, "<defaults>")

    if cfg.default_datapath not in DATAPATHS:
        raise ConfigError(
            f"{origin('default_datapath')}: default_datapath: {cfg.default_datapath!r} is not "
            f"one of {', '.join(DATAPATHS)}"
        )
    if cfg.log_level not in LOG_LEVELS:
        raise ConfigError(
            f"{origin('log_level')}: log_level: {cfg.log_level!r} is not one of "
            f"{', '.join(LOG_LEVELS)}"
        )
    if not 1 <= cfg.fdb_aging_seconds <= 86400:
        raise ConfigError(
            f"{origin('fdb_aging_seconds')}: fdb_aging_seconds: {cfg.fdb_aging_seconds} is not "
            "in 1..86400"
        )
    for key in ("socket", "state_dir", "bpffs_dir", "cache_dir"):
        if not getattr(cfg, key).startswith("/"):
            value = getattr(cfg, key)
            raise ConfigError(f"{origin(key)}: {key}: {value!r} must be an absolute path")
    if not cfg.bpffs_dir.startswith("/sys/fs/bpf/"):
        raise ConfigError(
            f"{origin('bpffs_dir')}: bpffs_dir: {cfg.bpffs_dir!r} must be under /sys/fs/bpf/"
        )
    if cfg.tcp is not None:
        where = origin("tcp")
        if not cfg.tcp.address or ":" not in cfg.tcp.address:
            raise ConfigError(f"{where}: tcp.address: {cfg.tcp.address!r} must be HOST:PORT")
        if not (cfg.tcp.tls_cert and cfg.tcp.tls_key):
            raise ConfigError(f"{where}: tcp: tls_cert and tls_key are required (TCP needs TLS)")
        if not cfg.tcp.tls_client_ca and not cfg.tcp.unauthenticated_clients:
            raise ConfigError(
                f"{where}: tcp.tls_client_ca is required: without client certificates any TLS "
                "client that reaches the address has full control of the switch; give the CA "
                "that signs the clients' certificates, or set tcp.unauthenticated_clients: true "
                "to accept every client")
        if cfg.tcp.tls_client_ca and cfg.tcp.unauthenticated_clients:
            raise ConfigError(
                f"{where}: tcp.unauthenticated_clients: true contradicts tcp.tls_client_ca "
                "(clients with certificates signed by it): give one of them")
        if cfg.tcp.tls_client_ca and not cfg.tcp.roles:
            raise ConfigError(
                f"{where}: tcp.roles is required with tcp.tls_client_ca: map the clients' "
                "certificate names to roles, e.g. `roles: {admin: [CN=ctl1], reader: "
                "[DNS:monitor.example.org]}`")
        if cfg.tcp.roles and cfg.tcp.unauthenticated_clients:
            raise ConfigError(
                f"{origin('tcp.roles')}: tcp.roles needs client certificates: "
                "tcp.unauthenticated_clients: true makes every client an admin")
    for key in ("reader_socket", "audit_log"):
        value = getattr(cfg.api, key)
        if value and not value.startswith("/"):
            raise ConfigError(f"{origin('api.' + key)}: api.{key}: {value!r} must be an "
                              "absolute path")
    if cfg.api.reader_socket and cfg.api.reader_group is None:
        raise ConfigError(f"{origin('api.reader_socket')}: api.reader_socket needs "
                          "api.reader_group (the group whose members may use it)")
    if cfg.api.reader_group is not None:
        try:
            reader_gid(cfg.api.reader_group)
        except ValueError as exc:
            raise ConfigError(f"{origin('api.reader_group')}: api.reader_group: {exc}") from None
        if cfg.reader_socket() == cfg.socket:
            raise ConfigError(f"{origin('api.reader_socket')}: api.reader_socket: "
                              f"{cfg.socket!r} is the admin socket")
    from vswitchd.trace import ratelimit

    for setting, value in ((ratelimit.WATCH, cfg.watch.rate_limit),
                           (ratelimit.PACKET_IN, cfg.packet_in.rate_limit)):
        why = None if value is None else setting.problem(value)
        if why:
            key = setting.config_key
            raise ConfigError(f"{origin(key)}: {key}: {value!r} {why}")
    history = cfg.events.history
    if isinstance(history, bool) or not isinstance(history, int) or \
            not 1 <= history <= MAX_HISTORY:
        raise ConfigError(f"{origin('events.history')}: events.history: {history!r} is not in "
                          f"1..{MAX_HISTORY} (events held for resuming subscribers)")
    if cfg.metrics is not None:
        address = cfg.metrics.address
        key = "metrics.address"
        if not isinstance(address, str) or not address:
            at = cfg.origins.get(key) or origin("metrics")
            raise ConfigError(f"{at}: {key}: {address!r}: give HOST:PORT (e.g. 127.0.0.1:9476), or "
                              "leave the metrics section out")
        try:
            metrics_address(address)
        except ValueError as exc:
            raise ConfigError(f"{origin(key)}: {key}: {address!r} {exc}") from None
    problem = cfg.datapath.problem()
    if problem:
        key = f"datapath.{problem[0]}"
        raise ConfigError(f"{origin(key)}: {key}: {getattr(cfg.datapath, problem[0])!r} "
                          f"{problem[1]}")
    most = cfg.watch.max_watchers
    if isinstance(most, bool) or not isinstance(most, int) or not 1 <= most <= MAX_WATCHERS:
        raise ConfigError(f"{origin('watch.max_watchers')}: watch.max_watchers: {most!r} is not "
                          f"in 1..{MAX_WATCHERS} (the datapath has {MAX_WATCHERS} watcher slots)")


def parse(text: str, path: str = "<config>") -> Config:
    """Parse YAML text into a Config; raise ConfigError naming path, line and key."""
    import yaml

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader refuses control characters at once
        cfg = _parse_nodes(path, loader)
    except yaml.reader.ReaderError as exc:  # no mark: the character's position
        at = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{path}:{at}: not valid YAML: character {exc.character:#x} "
                          f"({exc.reason})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(f"{path}{line}: not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()
    _check_values(cfg)
    return cfg


def _parse_nodes(path: str, loader: yaml.SafeLoader) -> Config:
    root = loader.get_single_node()
    cfg = Config()
    if root is None:
        return cfg
    for key, (value, node) in mapping(path, root, "the configuration", loader).items():
        if key not in _SCHEMA:
            raise ConfigError(
                f"{where(path, node)}: unknown key '{key}' (known: {', '.join(_SCHEMA)})"
            )
        cfg.origins[key] = where(path, node)
        if key == "bridges":
            from vswitchd import desired

            cfg.bridges = desired.parse(path, node, loader)
        elif key == "tcp":
            if value is None:
                continue
            tcp = TcpListener()
            for tkey, (tval, tnode) in mapping(path, node, "tcp", loader).items():
                if tkey not in _TCP_SCHEMA:
                    raise ConfigError(
                        f"{where(path, tnode)}: unknown key 'tcp.{tkey}' "
                        f"(known: {', '.join(_TCP_SCHEMA)})"
                    )
                if tkey == "roles":
                    tcp.roles = _parse_roles(path, tnode, loader)
                    cfg.origins["tcp.roles"] = where(path, tnode)
                    continue
                setattr(tcp, tkey, typed(path, f"tcp.{tkey}", tval, tnode, _TCP_SCHEMA[tkey]))
            cfg.tcp = tcp
        elif key == "api":
            cfg.api = _parse_api(path, node, value, loader, cfg.origins)
        elif key == "watch":
            cfg.watch = _parse_watch(path, node, value, loader, cfg.origins)
        elif key == "packet_in":
            cfg.packet_in = _parse_section(path, node, value, loader, cfg.origins, "packet_in",
                                           _PACKET_IN_SCHEMA, PacketInSettings())
        elif key == "events":
            cfg.events = _parse_section(path, node, value, loader, cfg.origins, "events",
                                        _EVENTS_SCHEMA, EventSettings())
        elif key == "datapath":
            cfg.datapath = _parse_section(path, node, value, loader, cfg.origins, "datapath",
                                          _DATAPATH_SCHEMA, Limits())
        elif key == "metrics":
            cfg.metrics = _parse_section(path, node, value, loader, cfg.origins, "metrics",
                                         _METRICS_SCHEMA, MetricsSettings())
        else:
            setattr(cfg, key, typed(path, key, value, node, _SCHEMA[key]))
    return cfg


def _parse_roles(path: str, node: yaml.Node, loader: yaml.SafeLoader) -> dict[str, list[str]]:
    """`tcp.roles`: {reader|admin: [certificate name, ...]}; each name parses (certnames) and
    is given once across the roles."""
    import yaml

    from vswitchd.api import certnames
    from vswitchd.api.roles import ROLES

    roles: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for role, (_, rnode) in mapping(path, node, "tcp.roles", loader).items():
        if role not in ROLES:
            raise ConfigError(f"{where(path, rnode)}: unknown role 'tcp.roles.{role}' "
                              f"(known: {', '.join(ROLES)})")
        if not isinstance(rnode, yaml.SequenceNode):
            raise ConfigError(f"{where(path, rnode)}: tcp.roles.{role}: expected a list of "
                              "certificate names (CN=name, DNS:name, URI:uri, IP:address)")
        roles[role] = []
        for item in rnode.value:
            name = loader.construct_object(item, deep=True)
            at = where(path, item)
            if not isinstance(name, str):
                raise ConfigError(f"{at}: tcp.roles.{role}: {name!r} is not a certificate name "
                                  "(CN=name, DNS:name, URI:uri, IP:address)")
            try:
                canonical = certnames.parse(name)
            except ValueError as exc:
                raise ConfigError(f"{at}: tcp.roles.{role}: {name!r}: {exc}") from None
            if canonical in first:
                raise ConfigError(f"{at}: tcp.roles.{role}: {name!r} is given already on line "
                                  f"{first[canonical]} (a certificate name has one role)")
            first[canonical] = str(item.start_mark.line + 1)
            roles[role].append(canonical)
    return roles


def _parse_api(path: str, node: yaml.Node, value: Any, loader: yaml.SafeLoader,
               origins: dict[str, str]) -> ApiSettings:
    api = ApiSettings()
    if value is None:
        return api
    for akey, (aval, anode) in mapping(path, node, "api", loader).items():
        if akey not in _API_SCHEMA:
            raise ConfigError(f"{where(path, anode)}: unknown key 'api.{akey}' "
                              f"(known: {', '.join(_API_SCHEMA)})")
        origins[f"api.{akey}"] = where(path, anode)
        if akey == "reader_group":
            if not (isinstance(aval, str) and aval or
                    isinstance(aval, int) and not isinstance(aval, bool)):
                raise ConfigError(f"{where(path, anode)}: api.reader_group: expected a group "
                                  f"name or number, got {aval!r}")
        else:
            aval = typed(path, f"api.{akey}", aval, anode, _API_SCHEMA[akey])
        setattr(api, akey, aval)
    return api


def reader_gid(group: str | int) -> int:
    """The gid of `api.reader_group`; ValueError saying what is wrong. A number is taken as a
    gid whether or not a group of that number exists."""
    if isinstance(group, int):
        if not 0 <= group < 2**32 - 1:
            raise ValueError(f"{group} is not a gid (0..{2**32 - 2})")
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"there is no group {group!r} (create it, or give a gid)") from None


def _parse_watch(path: str, node: yaml.Node, value: Any, loader: yaml.SafeLoader,
                 origins: dict[str, str]) -> WatchSettings:
    return _parse_section(path, node, value, loader, origins, "watch", _WATCH_SCHEMA,
                          WatchSettings())


def _parse_section(path: str, node: yaml.Node, value: Any, loader: yaml.SafeLoader,
                   origins: dict[str, str], name: str, schema: dict[str, type], into: Any) -> Any:
    """A section of plain settings: INTO with the keys of SCHEMA the file gives."""
    if value is None:
        return into
    for skey, (sval, snode) in mapping(path, node, name, loader).items():
        if skey not in schema:
            raise ConfigError(f"{where(path, snode)}: unknown key '{name}.{skey}' "
                              f"(known: {', '.join(schema)})")
        origins[f"{name}.{skey}"] = where(path, snode)
        into = dataclasses.replace(into, **{skey: sval})  # range and type: _check_values
    return into


def load(path: str | None) -> Config:
    """Defaults when path is None, else the file's settings on top of them."""
    if path is None:
        return Config()
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, path)


def override(cfg: Config, **flags: Any) -> Config:
    """Command-line flags (those not None) win over the file."""
    for key, value in flags.items():
        if value is not None:
            setattr(cfg, key, value)
            cfg.origins[key] = f"--{key.replace('_', '-')}"
    _check_values(cfg)
    return cfg
