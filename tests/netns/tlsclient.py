"""A gRPC client over TCP with TLS, run inside the daemon's namespace by the listener tests:

    tlsclient.py HOST:PORT CA.pem [CERT.pem KEY.pem] [--create BRIDGE]

prints `ok` when GetStatus answered, else `refused CODE` (exit 1); with --create it then tries
CreateBridge and prints `create ok` or `create refused CODE: DETAILS`."""

from __future__ import annotations

import sys

import grpc

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc


def main(address: str, ca: str, *rest: str) -> int:
    create = ""
    if len(rest) >= 2 and rest[-2] == "--create":
        create, rest = rest[-1], rest[:-2]
    cert, key = rest if rest else ("", "")

    def read(path: str) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    creds = grpc.ssl_channel_credentials(read(ca), read(key), read(cert))
    with grpc.secure_channel(address, creds) as channel:
        stub = pb_grpc.SwitchStub(channel)
        try:
            stub.GetStatus(pb.GetStatusRequest(), timeout=10)
            print("ok")
        except grpc.RpcError as exc:
            print(f"refused {exc.code().name}")
            if not create:
                return 1
        if create:
            try:
                stub.CreateBridge(pb.CreateBridgeRequest(
                    bridge=pb.Bridge(name=create, datapath=pb.DATAPATH_KERNEL)), timeout=30)
                print("create ok")
            except grpc.RpcError as exc:
                print(f"create refused {exc.code().name}: {exc.details()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
