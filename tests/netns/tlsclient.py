"""A gRPC client over TCP with TLS, run inside the daemon's namespace by the listener tests:

    tlsclient.py HOST:PORT CA.pem [CERT.pem KEY.pem]

prints `ok` when GetStatus answered, else `refused CODE` (exit 1)."""

from __future__ import annotations

import sys

import grpc

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc


def main(address: str, ca: str, cert: str = "", key: str = "") -> int:
    def read(path: str) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    with grpc.secure_channel(address, creds) as channel:
        try:
            pb_grpc.SwitchStub(channel).GetStatus(pb.GetStatusRequest(), timeout=10)
        except grpc.RpcError as exc:
            print(f"refused {exc.code().name}")
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
