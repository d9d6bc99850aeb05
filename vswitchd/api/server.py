"""gRPC listeners: the root-only Unix socket (always), the reader socket (when api.reader_group
is set) and TCP with TLS (only when configured), with client certificates mapped to roles
unless the configuration says the listener is unauthenticated. The Unix sockets are the
daemon's own, relayed to gRPC's private socket so that each call's uid/gid/pid is known
(vswitchd.api.peers); vswitchd.api.access checks roles and writes the audit log.

Health checking and server reflection are registered so generic tools (grpcurl,
grpc_health_probe) work against the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd.api import audit
from vswitchd.api.access import AccessControl, Identify
from vswitchd.api.peers import Relay, claim_socket_path
from vswitchd.api.servicer import SwitchServicer
from vswitchd.config import Config, reader_gid
from vswitchd.switch import Switch

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Switch"].full_name


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


# Threads for the calls: every stream (Subscribe, packet-in, watch) holds one while it lasts,
# and each kind is capped below this (vswitchd.events.MAX_SUBSCRIBERS, the watcher slots,
# vswitchd.switch.packet_in.MAX_STREAMS), so unary calls always find threads.
WORKERS = 64
# A request is at most this large (gRPC's default is 4 MiB); a larger one is refused with
# RESOURCE_EXHAUSTED before it is read. The largest requests are whole flow tables: a rule's
# text and fields take about 100 bytes, so this holds some 150 000 rules. Replies have no
# limit: a listing is as large as what it lists (100 000 FDB entries of a bridge: 3.8 MB),
# and the clients (vswapi) take any size.
MAX_REQUEST_BYTES = 16 << 20
# Streams (calls) at once on one connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS; gRPC's
# default is unlimited): a client's further calls wait in its own queue until one ends, so one
# connection cannot take more than a quarter of the WORKERS. A controller needs a few (Subscribe,
# packet-in, watch and its unary calls).
MAX_STREAMS_PER_CONNECTION = 16
OPTIONS = [("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
           ("grpc.max_send_message_length", -1),
           ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION)]


def private_socket(cfg: Config) -> str:
    """gRPC's own listener, which only the relay (and root) can reach."""
    return f"{cfg.socket}.grpc"


class ApiServer:
    """The gRPC server and the Unix sockets relayed to it; stop() ends both."""

    def __init__(self, server: grpc.Server, relay: Relay,
                 audit_handler: logging.Handler | None) -> None:
        self.server = server
        self.relay = relay
        self.audit_handler = audit_handler

    def stop(self, grace: float | None) -> None:
        self.relay.stop_accepting()  # calls under way get GRACE seconds to end
        self.server.stop(grace=grace).wait()
        self.relay.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.relay.target)
        if self.audit_handler is not None:
            audit.log.removeHandler(self.audit_handler)
            self.audit_handler.close()


def build_server(switch: Switch, cfg: Config, relay: Relay, workers: int = WORKERS,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """INTERCEPTORS run first (the metrics count refused calls too), then access control."""
    access = AccessControl(Identify(relay, cfg.tcp))
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                         interceptors=[*interceptors, access], options=OPTIONS)
    pb_grpc.add_SwitchServicer_to_server(SwitchServicer(switch), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    claim_socket_path(relay.target)
    old_umask = os.umask(0o177)  # born 0600: only root reaches gRPC without the relay
    try:
        server.add_insecure_port(f"unix:{relay.target}")
    finally:
        os.umask(old_umask)

    if cfg.tcp is not None:
        if cfg.tcp.unauthenticated_clients:
            log.warning("the TCP listener on %s accepts every TLS client without a certificate "
                        "(tcp.unauthenticated_clients: true): whoever reaches it has full "
                        "control of the switch", cfg.tcp.address)
        ca = _read(cfg.tcp.tls_client_ca) if cfg.tcp.tls_client_ca else None
        creds = grpc.ssl_server_credentials(
            [(_read(cfg.tcp.tls_key), _read(cfg.tcp.tls_cert))],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )
        server.add_secure_port(cfg.tcp.address, creds)
    return server


def start(switch: Switch, cfg: Config,
          interceptors: Sequence[grpc.ServerInterceptor] = ()) -> ApiServer:
    """INTERCEPTORS: the metrics' (vswitchd.metrics.api), when they are on."""
    gid = None
    reader = cfg.reader_socket()
    if reader is not None and cfg.api.reader_group is not None:
        gid = reader_gid(cfg.api.reader_group)  # checked by config: a missing group stops it
    relay = Relay(private_socket(cfg))
    server = build_server(switch, cfg, relay, interceptors=interceptors)
    server.start()
    handler = audit.open_file(cfg.api.audit_log) if cfg.api.audit_log else None
    try:
        relay.listen(cfg.socket, "admin", 0o600)
        if reader is not None and gid is not None:
            relay.listen(reader, "reader", 0o660, gid)
            log.info("reader socket %s (group %s, mode 0660)", reader, cfg.api.reader_group)
    except BaseException:
        ApiServer(server, relay, handler).stop(grace=0)
        raise
    return ApiServer(server, relay, handler)
