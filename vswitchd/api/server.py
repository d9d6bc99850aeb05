"""gRPC listeners: the root-only Unix socket (always) and TCP with TLS (only when configured),
with client certificates unless the configuration says the listener is unauthenticated.

Health checking and server reflection are registered so generic tools (grpcurl,
grpc_health_probe) work against the daemon.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd.api.servicer import SwitchServicer
from vswitchd.config import Config
from vswitchd.errors import FailedPrecondition
from vswitchd.switch import Switch

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Switch"].full_name


def _claim_socket_path(path: str) -> None:
    """Remove a stale socket file; refuse if a live daemon answers on it."""
    Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over from a daemon that died
        return
    finally:
        probe.close()
    raise FailedPrecondition(f"another vswitchd is already listening on {path}")


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
OPTIONS = [("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
           ("grpc.max_send_message_length", -1)]


def build_server(switch: Switch, cfg: Config, workers: int = WORKERS,
                 interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    server = grpc.server(ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
                         interceptors=list(interceptors), options=OPTIONS)
    pb_grpc.add_SwitchServicer_to_server(SwitchServicer(switch), server)

    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )

    _claim_socket_path(cfg.socket)
    old_umask = os.umask(0o177)  # the socket is born 0600: no window where others can connect
    try:
        server.add_insecure_port(f"unix:{cfg.socket}")
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
          interceptors: Sequence[grpc.ServerInterceptor] = ()) -> grpc.Server:
    """INTERCEPTORS: the metrics' (vswitchd.metrics.api), when they are on."""
    server = build_server(switch, cfg, interceptors=interceptors)
    server.start()
    with contextlib.suppress(FileNotFoundError):
        os.chmod(cfg.socket, 0o600)
    return server
