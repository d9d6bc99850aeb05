"""Typed calls for controllers: one method per RPC of `vswitchd.v1.Switch`, keyword arguments
with defaults, flow rules as text (ovs-ofctl syntax, vswapi.flowspec) or messages, errors as
vswapi.errors exceptions, and streams that reconnect (vswapi.streams).

    from vswapi import Switch

    with Switch.connect() as sw:                       # the local daemon's unix socket
        sw.create_bridge("br0", may_exist=True)
        ports = sw.list_ports("br0")                   # a list, with .revision
        for event in sw.events(since_revision=ports.revision):
            ...

Replies are the API's messages (vswapi.switch_pb2): pb.Bridge, pb.Port, pb.Flow ...; List
calls return a `Listed` (a list of them with the revision it is consistent at).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import grpc

from vswapi import switch_pb2 as pb
from vswapi.client import SwitchClient, connect
from vswapi.errors import from_rpc_error
from vswapi.streams import EventStream, PacketInStream, WatchStream

T = TypeVar("T")
DEFAULT_TIMEOUT = 30.0


class Listed(list[T]):
    """A List call's items and the switch's revision they are consistent at."""

    revision: int = 0

    def __init__(self, items: Iterable[T], revision: int) -> None:
        super().__init__(items)
        self.revision = revision


def _enum(enum: Any, prefix: str, word: str | int, what: str) -> int:
    if isinstance(word, int):
        return word
    try:
        return enum.Value(prefix + word.upper().replace("-", "_"))
    except ValueError:
        known = ", ".join(n.removeprefix(prefix).lower() for n in enum.keys()
                          if not n.endswith("UNSPECIFIED"))
        raise ValueError(f"{what} {word!r}: known: {known}") from None


def _flow(flow: str | pb.Flow) -> pb.Flow:
    if isinstance(flow, pb.Flow):
        return flow
    from vswapi.flowspec import parse_flow

    return parse_flow(flow)


def _match(match: str | pb.FlowMatch) -> pb.FlowMatch:
    if isinstance(match, pb.FlowMatch):
        return match
    from vswapi.flowspec import parse_match

    return parse_match(match)


class Switch:
    """A controller's handle on one vswitchd. Thread-safe (gRPC channels are)."""

    def __init__(self, client: SwitchClient, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout

    @classmethod
    def connect(cls, socket_path: str | None = None, target: str | None = None, *,
                ca: str | None = None, cert: str | None = None, key: str | None = None,
                server_name: str | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> Switch:
        """By unix socket (default $VSWITCHD_SOCKET or /run/vswitchd/vswitchd.sock) or TCP
        TARGET ("host:port") with TLS: CA (the daemon's certificate's CA, PEM file), CERT and
        KEY (this client's certificate and key, which the daemon requires), SERVER_NAME (the
        name in the daemon's certificate, when it is not TARGET's host)."""
        credentials, options = None, []
        if target is not None and (ca or cert or key):
            credentials = tls_credentials(ca, cert, key)
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
        elif ca or cert or key:
            raise ValueError("TLS files (ca, cert, key) go with a TCP target")
        return cls(connect(socket_path, target, credentials=credentials, options=options),
                   timeout)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Switch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, rpc: str, request: Any) -> Any:
        try:
            return getattr(self.client.stub, rpc)(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None

    # ---- the daemon -------------------------------------------------------------------------

    def status(self) -> pb.Status:
        return self._call("GetStatus", pb.GetStatusRequest())

    def shutdown(self, cleanup: bool = False) -> None:
        self._call("Shutdown", pb.ShutdownRequest(cleanup=cleanup))

    # ---- bridges ----------------------------------------------------------------------------

    def create_bridge(self, name: str, *, datapath: str | int = 0,
                      addresses: Sequence[str] = (), nat: bool = False,
                      may_exist: bool = False) -> pb.Bridge:
        """datapath: "ebpf", "kernel" or 0 (the daemon's default)."""
        dp = _enum(pb.Datapath, "DATAPATH_", datapath, "datapath") if datapath else 0
        return self._call("CreateBridge", pb.CreateBridgeRequest(
            bridge=pb.Bridge(name=name, datapath=dp, addresses=list(addresses), nat=nat),
            may_exist=may_exist))

    def get_bridge(self, name: str) -> pb.Bridge:
        return self._call("GetBridge", pb.GetBridgeRequest(name=name))

    def list_bridges(self) -> Listed[pb.Bridge]:
        r = self._call("ListBridges", pb.ListBridgesRequest())
        return Listed(r.bridges, r.revision)

    def update_bridge(self, name: str, *, nat: bool | None = None,
                      addresses: Sequence[str] | None = None,
                      expected_revision: int | None = None) -> pb.Bridge:
        """Change what is given: NAT on or off, the bridge's own addresses (replaced)."""
        if nat is None and addresses is None:
            raise ValueError("update_bridge: give nat, addresses or both")
        req = pb.UpdateBridgeRequest(
            bridge=pb.Bridge(name=name, nat=bool(nat), addresses=list(addresses or ())),
            expected_revision=expected_revision)
        if addresses is not None:
            req.update_mask.paths.append("addresses")
        if nat is not None:
            req.update_mask.paths.append("nat")
        return self._call("UpdateBridge", req)

    def delete_bridge(self, name: str, *, if_exists: bool = False,
                      expected_revision: int | None = None) -> bool:
        return self._call("DeleteBridge", pb.DeleteBridgeRequest(
            name=name, if_exists=if_exists, expected_revision=expected_revision)).deleted

    # ---- ports ------------------------------------------------------------------------------

    def create_port(self, bridge: str, name: str, *, type: str | int = "veth",  # noqa: A002
                    may_exist: bool = False, **fields: Any) -> pb.Port:
        """FIELDS: any of pb.Port's request fields (netns, addresses, mac, mtu, vlan, trunks,
        native_vlan, gateway, owner, multi_queue, uplink, xdp, vni, local, remotes ...)."""
        if isinstance(fields.get("xdp"), str):
            fields["xdp"] = _enum(pb.XdpMode, "XDP_", fields["xdp"], "xdp")
        port = pb.Port(bridge=bridge, name=name,
                       type=_enum(pb.PortType, "PORT_TYPE_", type, "type"), **fields)
        return self._call("CreatePort", pb.CreatePortRequest(port=port, may_exist=may_exist))

    def get_port(self, bridge: str, name: str) -> pb.Port:
        return self._call("GetPort", pb.GetPortRequest(bridge=bridge, name=name))

    def list_ports(self, bridge: str) -> Listed[pb.Port]:
        r = self._call("ListPorts", pb.ListPortsRequest(bridge=bridge))
        return Listed(r.ports, r.revision)

    def update_port(self, bridge: str, name: str, *, expected_revision: int | None = None,
                    **changes: Any) -> pb.Port:
        """CHANGES: vlan, trunks, native_vlan, xdp, remotes (the fields named are set, the
        others keep their values; vlan=0 with trunks=[] makes a port carry every VLAN)."""
        if not changes:
            raise ValueError("update_port: name at least one field to change")
        if isinstance(changes.get("xdp"), str):
            changes["xdp"] = _enum(pb.XdpMode, "XDP_", changes["xdp"], "xdp")
        req = pb.UpdatePortRequest(port=pb.Port(bridge=bridge, name=name, **changes),
                                   expected_revision=expected_revision)
        req.update_mask.paths.extend(changes)
        return self._call("UpdatePort", req)

    def delete_port(self, bridge: str, name: str, *, if_exists: bool = False,
                    expected_revision: int | None = None) -> bool:
        return self._call("DeletePort", pb.DeletePortRequest(
            bridge=bridge, name=name, if_exists=if_exists,
            expected_revision=expected_revision)).deleted

    def port_stats(self, bridge: str, port: str = "") -> list[pb.PortStats]:
        return list(self._call("GetPortStats",
                               pb.GetPortStatsRequest(bridge=bridge, port=port)).stats)

    # ---- FDB and VTEPs ----------------------------------------------------------------------

    def list_fdb(self, bridge: str) -> Listed[pb.FdbEntry]:
        r = self._call("ListFdbEntries", pb.ListFdbEntriesRequest(bridge=bridge))
        return Listed(r.entries, r.revision)

    def add_fdb(self, bridge: str, mac: str, port: str, *, vlan: int = 0, remote: str = "",
                expected_revision: int | None = None) -> pb.FdbEntry:
        """A static entry; expected_revision=0: only if the MAC has no entry yet."""
        return self._call("CreateFdbEntry", pb.CreateFdbEntryRequest(
            bridge=bridge, entry=pb.FdbEntry(mac=mac, port=port, vlan=vlan, remote=remote),
            expected_revision=expected_revision))

    def delete_fdb(self, bridge: str, mac: str, *, vlan: int = 0, if_exists: bool = False,
                   expected_revision: int | None = None) -> bool:
        return self._call("DeleteFdbEntry", pb.DeleteFdbEntryRequest(
            bridge=bridge, mac=mac, vlan=vlan, if_exists=if_exists,
            expected_revision=expected_revision)).deleted

    def add_vtep(self, bridge: str, port: str, address: str, *,
                 may_exist: bool = False) -> pb.Vtep:
        return self._call("CreateVtep", pb.CreateVtepRequest(
            vtep=pb.Vtep(bridge=bridge, port=port, address=address), may_exist=may_exist))

    def delete_vtep(self, bridge: str, port: str, address: str, *,
                    if_exists: bool = False) -> bool:
        return self._call("DeleteVtep", pb.DeleteVtepRequest(
            vtep=pb.Vtep(bridge=bridge, port=port, address=address),
            if_exists=if_exists)).deleted

    def list_vteps(self, bridge: str = "", port: str = "") -> list[pb.Vtep]:
        return list(self._call("ListVteps", pb.ListVtepsRequest(bridge=bridge,
                                                                port=port)).vteps)

    # ---- flow rules -------------------------------------------------------------------------

    def add_flows(self, bridge: str, flows: Iterable[str | pb.Flow]) -> tuple[int, int]:
        """All or nothing: (added, replaced). A flow is ovs-ofctl text
        ("priority=10,arp,actions=controller") or a pb.Flow."""
        r = self._call("AddFlows", pb.AddFlowsRequest(bridge=bridge,
                                                      flows=[_flow(f) for f in flows]))
        return r.added, r.replaced

    def replace_flows(self, bridge: str,
                      flows: Iterable[str | pb.Flow]) -> tuple[int, int, int]:
        """Make the table exactly FLOWS: (added, removed, unchanged)."""
        r = self._call("ReplaceFlows", pb.ReplaceFlowsRequest(bridge=bridge,
                                                              flows=[_flow(f) for f in flows]))
        return r.added, r.removed, r.unchanged

    def delete_flows(self, bridge: str, match: str | pb.FlowMatch | None = None, *,
                     strict: bool = False, priority: int | None = None, cookie: int = 0,
                     cookie_mask: int = 0, expected_revision: int | None = None) -> int:
        """The number deleted. match: text ("in_port=c1,arp") or a pb.FlowMatch; None: every
        rule (subject to the cookie filter)."""
        req = pb.DeleteFlowsRequest(bridge=bridge, strict=strict, priority=priority,
                                    cookie=cookie, cookie_mask=cookie_mask,
                                    expected_revision=expected_revision)
        if match is not None:
            req.match.CopyFrom(_match(match))
        return self._call("DeleteFlows", req).deleted

    def list_flows(self, bridge: str) -> Listed[pb.Flow]:
        r = self._call("ListFlows", pb.ListFlowsRequest(bridge=bridge))
        return Listed(r.flows, r.revision)

    # ---- packets ----------------------------------------------------------------------------

    def send_packet(self, bridge: str, frame: bytes | str | pb.FlowMatch, *,
                    out_port: str | None = None, in_port: str | None = None) -> int:
        """Packet-out: FRAME (bytes, or header values as trace text / a pb.FlowMatch) leaves
        by OUT_PORT, or enters the bridge as if IN_PORT received it. The bytes sent."""
        req = pb.SendPacketRequest(bridge=bridge)
        if out_port is not None:
            req.out_port = out_port
        if in_port is not None:
            req.in_port = in_port
        if isinstance(frame, bytes | bytearray):
            req.data = bytes(frame)
        else:
            req.packet.CopyFrom(_match(frame))
        return self._call("SendPacket", req).length

    def trace(self, bridge: str, packet: str | pb.FlowMatch,
              truncate: int = 0) -> pb.TraceResponse:
        return self._call("Trace", pb.TraceRequest(bridge=bridge, packet=_match(packet),
                                                    truncate=truncate))

    def packet_in_config(self) -> pb.PacketInConfig:
        return self._call("GetPacketInConfig", pb.GetPacketInConfigRequest())

    def set_packet_in_rate(self, rate: int) -> pb.PacketInConfig:
        req = pb.UpdatePacketInConfigRequest(config=pb.PacketInConfig(rate_limit=rate))
        req.update_mask.paths.append("rate_limit")
        return self._call("UpdatePacketInConfig", req)

    def set_watch_rate(self, rate: int) -> pb.WatchConfig:
        req = pb.UpdateWatchConfigRequest(config=pb.WatchConfig(rate_limit=rate))
        req.update_mask.paths.append("rate_limit")
        return self._call("UpdateWatchConfig", req)

    # ---- streams ----------------------------------------------------------------------------

    def events(self, bridges: Sequence[str] = (), kinds: Sequence[str | int] = (),
               since_revision: int | None = None, *, reconnect: bool = True,
               on_resync: Callable[[], int] | None = None) -> EventStream:
        """Changes as pb.Event, from after SINCE_REVISION (None: from now), resuming by
        revision across reconnections (see vswapi.streams.EventStream). kinds: "port",
        "fdb", "flow", "bridge", "daemon" (or EventKind values)."""
        kinds_pb = [_enum(pb.EventKind, "EVENT_KIND_", k, "kind") for k in kinds]
        return EventStream(self, list(bridges), kinds_pb, since_revision, reconnect, on_resync)

    def packet_ins(self, bridges: Sequence[str] = (), *,
                   reconnect: bool = True) -> PacketInStream:
        """Frames the datapath sends to controllers (the `controller` action), as pb.PacketIn,
        and vswapi.streams.Lost markers."""
        return PacketInStream(self, list(bridges), reconnect)

    def watch(self, bridge: str, *, port: str = "", match: str | pb.FlowMatch | None = None,
              drops_only: bool = False, reconnect: bool = True) -> WatchStream:
        """The datapath's decisions on live packets, as pb.WatchEvent, and Lost markers."""
        req = pb.WatchRequest(bridge=bridge, port=port, drops_only=drops_only)
        if match is not None:
            req.match.CopyFrom(_match(match))
        return WatchStream(self, req, reconnect)


def tls_credentials(ca: str | None, cert: str | None,
                    key: str | None) -> grpc.ChannelCredentials:
    """Channel credentials from PEM files: CA verifies the daemon; CERT and KEY are this
    client's (both or neither)."""
    if bool(cert) != bool(key):
        raise ValueError("a client certificate needs its key (cert and key, both)")

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key),
                                        certificate_chain=read(cert))
