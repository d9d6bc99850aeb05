"""The Switch service: each RPC validates nothing itself, calls the switch, maps the result.

SwitchError subclasses become their canonical status codes; anything else is a bug and is
reported as INTERNAL with a pointer to the log (never UNKNOWN).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from vswapi import switch_pb2 as pb
from vswapi import switch_pb2_grpc as pb_grpc
from vswitchd import __version__
from vswitchd.api import convert
from vswitchd.errors import InvalidArgument, SwitchError
from vswitchd.events import Event, Lost
from vswitchd.flows.batch import Stages, gc_paused
from vswitchd.flows.request import from_message as flow_request
from vswitchd.flows.request import match_dict
from vswitchd.switch import Switch
from vswitchd.trace.watch import Lost as WatchLost

log = logging.getLogger(__name__)

WATCH_WAKEUP_SECONDS = 0.5  # how soon a watch notices a client that left without a cancel
# A status message travels in a header whose size gRPC limits: messages quote short prefixes of
# user values (vswitchd.errors.shown), and this caps any message that still grew too long.
MAX_MESSAGE = 1000


def status_message(exc: SwitchError) -> str:
    """EXC's message, at most MAX_MESSAGE characters (its start and its end kept)."""
    text = str(exc)
    if len(text) <= MAX_MESSAGE:
        return text
    half = MAX_MESSAGE // 2
    return f"{text[:half]} … {text[-half:]}"


def _expected(request: Any) -> int | None:
    """The request's expected_revision (None when not given)."""
    return request.expected_revision if request.HasField("expected_revision") else None


FIELD_KEY = "vswitchd-field"  # trailing metadata: the request field at fault (INVALID_ARGUMENT)


def _abort(context: grpc.ServicerContext, exc: SwitchError) -> None:
    field = getattr(exc, "field", None)
    if field:  # for clients (vswapi.errors): which field, without parsing the message
        context.set_trailing_metadata(((FIELD_KEY, str(field)[:200]),))
    context.abort(getattr(grpc.StatusCode, exc.code_name), status_message(exc))


def _rpc(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: SwitchServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request)
        except SwitchError as exc:
            _abort(context, exc)
        except Exception:
            log.exception("internal error in %s", method.__name__)
            context.abort(grpc.StatusCode.INTERNAL,
                          f"internal error in {method.__name__}; see the vswitchd log")

    return wrapper


def _serve_stream(context: grpc.ServicerContext, name: str, open_stream: Callable[[], Any],
                  message: Callable[[Any], Any], lost_message: Callable[[Any], Any],
                  count: int = 0) -> Iterator[Any]:
    """The loop of every server stream (Watch, SubscribePacketIn, Subscribe): open it (errors as
    their status codes), send its items as they come (a Lost marker as LOST_MESSAGE) until the
    client leaves, COUNT items were sent (0: no end) or the stream closes, and close it in every
    case. The wakeups notice a client that left without a cancel."""
    try:
        stream = open_stream()
    except SwitchError as exc:
        _abort(context, exc)
    except Exception:
        log.exception("internal error in %s", name)
        context.abort(grpc.StatusCode.INTERNAL, f"internal error in {name}; see the vswitchd log")
    context.add_callback(stream.close)  # the client left (or the RPC ended): stop emitting
    sent = 0
    try:
        while context.is_active() and not stream.closed:
            item = stream.get(timeout=WATCH_WAKEUP_SECONDS)
            if item is None:
                continue
            if isinstance(item, Lost | WatchLost):
                yield lost_message(item)
                continue
            yield message(item)
            sent += 1
            if count and sent >= count:
                return
    finally:
        stream.close()


def _only_paths(request: Any, allowed: set[str]) -> list[str]:
    """The update_mask's paths: INVALID_ARGUMENT when it names none or one not in ALLOWED."""
    paths = list(request.update_mask.paths)
    unknown = sorted(set(paths) - allowed)
    if unknown or not paths:
        raise InvalidArgument("update_mask", ",".join(unknown or paths),
                              f"only {', '.join(sorted(allowed))} can be changed")
    return paths


class _EventMessages:
    """Each event's message, made once for all the streams that send it (the most recent
    ones are kept: subscribers read about the same events at about the same time)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._msgs: dict[int, pb.Event] = {}

    def get(self, event: Event) -> pb.Event:
        msg = self._msgs.get(event.revision)
        if msg is None:
            msg = self._msgs[event.revision] = convert.event_msg(event)
            if len(self._msgs) > self._size:  # drop the oldest half (dicts keep order)
                for rev in list(self._msgs)[: self._size // 2]:
                    self._msgs.pop(rev, None)
        return msg


class SwitchServicer(pb_grpc.SwitchServicer):
    def __init__(self, switch: Switch) -> None:
        self.switch = switch
        self._event_msgs = _EventMessages()

    @_rpc
    def GetStatus(self, request: pb.GetStatusRequest) -> pb.Status:  # noqa: N802
        return convert.status_msg(self.switch.status(), __version__)

    @_rpc
    def CreateBridge(self, request: pb.CreateBridgeRequest) -> pb.Bridge:  # noqa: N802
        view = self.switch.create_bridge(convert.bridge_spec(request.bridge), request.may_exist)
        return convert.bridge_msg(view)

    @_rpc
    def GetBridge(self, request: pb.GetBridgeRequest) -> pb.Bridge:  # noqa: N802
        return convert.bridge_msg(self.switch.get_bridge(request.name))

    @_rpc
    def ListBridges(self, request: pb.ListBridgesRequest) -> pb.ListBridgesResponse:  # noqa: N802
        views, revision = self.switch.at_revision(self.switch.list_bridges)
        return pb.ListBridgesResponse(bridges=[convert.bridge_msg(v) for v in views],
                                      revision=revision)

    @_rpc
    def UpdateBridge(self, request: pb.UpdateBridgeRequest) -> pb.Bridge:  # noqa: N802
        paths = _only_paths(request, {"nat", "addresses"})
        bridge = request.bridge
        view = self.switch.update_bridge(
            bridge.name, nat=bridge.nat if "nat" in paths else None,
            addresses=list(bridge.addresses) if "addresses" in paths else None,
            expected_revision=_expected(request))
        return convert.bridge_msg(view)

    @_rpc
    def DeleteBridge(self, request: pb.DeleteBridgeRequest) -> pb.DeleteBridgeResponse:  # noqa: N802
        return pb.DeleteBridgeResponse(
            deleted=self.switch.delete_bridge(request.name, request.if_exists,
                                              _expected(request))
        )

    @_rpc
    def CreatePort(self, request: pb.CreatePortRequest) -> pb.Port:  # noqa: N802
        port = request.port
        view = self.switch.create_port(port.bridge, convert.port_spec(port), request.may_exist)
        return convert.port_msg(view)

    @_rpc
    def GetPort(self, request: pb.GetPortRequest) -> pb.Port:  # noqa: N802
        return convert.port_msg(self.switch.get_port(request.bridge, request.name))

    @_rpc
    def ListPorts(self, request: pb.ListPortsRequest) -> pb.ListPortsResponse:  # noqa: N802
        views, revision = self.switch.at_revision(
            lambda: self.switch.list_ports(request.bridge))
        return pb.ListPortsResponse(ports=[convert.port_msg(v) for v in views],
                                    revision=revision)

    @_rpc
    def UpdatePort(self, request: pb.UpdatePortRequest) -> pb.Port:  # noqa: N802
        port = request.port
        paths = list(request.update_mask.paths)
        if not paths:
            raise InvalidArgument("update_mask", "", "names no field to change")
        view = self.switch.update_port(port.bridge, port.name,
                                       convert.port_changes(port, paths), _expected(request))
        return convert.port_msg(view)

    @_rpc
    def DeletePort(self, request: pb.DeletePortRequest) -> pb.DeletePortResponse:  # noqa: N802
        deleted = self.switch.delete_port(request.bridge, request.name, request.if_exists,
                                          _expected(request))
        return pb.DeletePortResponse(deleted=deleted)

    @_rpc
    def ListFdbEntries(  # noqa: N802
        self, request: pb.ListFdbEntriesRequest
    ) -> pb.ListFdbEntriesResponse:
        entries, revision = self.switch.at_revision(
            lambda: self.switch.fdb_list(request.bridge))
        return pb.ListFdbEntriesResponse(entries=[convert.fdb_msg(e) for e in entries],
                                         revision=revision)

    @_rpc
    def CreateFdbEntry(self, request: pb.CreateFdbEntryRequest) -> pb.FdbEntry:  # noqa: N802
        e = request.entry
        return convert.fdb_msg(self.switch.fdb_add(request.bridge, e.mac, e.port, e.vlan,
                                                   e.remote, _expected(request)))

    @_rpc
    def DeleteFdbEntry(  # noqa: N802
        self, request: pb.DeleteFdbEntryRequest
    ) -> pb.DeleteFdbEntryResponse:
        deleted = self.switch.fdb_delete(request.bridge, request.mac, request.vlan,
                                         request.if_exists, _expected(request))
        return pb.DeleteFdbEntryResponse(deleted=deleted)

    @_rpc
    def CreateVtep(self, request: pb.CreateVtepRequest) -> pb.Vtep:  # noqa: N802
        v = request.vtep
        return convert.vtep_msg(self.switch.vtep_add(v.bridge, v.port, v.address,
                                                     request.may_exist))

    @_rpc
    def DeleteVtep(self, request: pb.DeleteVtepRequest) -> pb.DeleteVtepResponse:  # noqa: N802
        v = request.vtep
        deleted = self.switch.vtep_delete(v.bridge, v.port, v.address, request.if_exists)
        return pb.DeleteVtepResponse(deleted=deleted)

    @_rpc
    def ListVteps(self, request: pb.ListVtepsRequest) -> pb.ListVtepsResponse:  # noqa: N802
        vteps = self.switch.vtep_list(request.bridge, request.port)
        return pb.ListVtepsResponse(vteps=[convert.vtep_msg(v) for v in vteps])

    @_rpc
    def GetPortStats(self, request: pb.GetPortStatsRequest) -> pb.GetPortStatsResponse:  # noqa: N802
        stats = self.switch.port_stats(request.bridge, request.port)
        return pb.GetPortStatsResponse(stats=[convert.stats_msg(s) for s in stats])

    @_rpc
    def AddFlows(self, request: pb.AddFlowsRequest) -> pb.AddFlowsResponse:  # noqa: N802
        stages = Stages()
        with gc_paused():
            flows = [flow_request(f) for f in request.flows]
            stages.mark("decode")
            added, replaced = self.switch.flows_add(request.bridge, flows, stages)
        return pb.AddFlowsResponse(added=added, replaced=replaced)

    @_rpc
    def ReplaceFlows(self, request: pb.ReplaceFlowsRequest) -> pb.ReplaceFlowsResponse:  # noqa: N802
        with gc_paused():
            flows = [flow_request(f) for f in request.flows]
            added, removed, unchanged = self.switch.flows_replace(request.bridge, flows)
        return pb.ReplaceFlowsResponse(added=added, removed=removed, unchanged=unchanged)

    @_rpc
    def DeleteFlows(self, request: pb.DeleteFlowsRequest) -> pb.DeleteFlowsResponse:  # noqa: N802
        deleted = self.switch.flows_delete(
            request.bridge,
            match_dict(request.match) if request.HasField("match") else None,
            strict=request.strict,
            priority=request.priority if request.HasField("priority") else None,
            cookie=request.cookie,
            cookie_mask=request.cookie_mask,
            expected_revision=_expected(request),
        )
        return pb.DeleteFlowsResponse(deleted=deleted)

    @_rpc
    def ListFlows(self, request: pb.ListFlowsRequest) -> pb.ListFlowsResponse:  # noqa: N802
        resp = pb.ListFlowsResponse()
        with gc_paused():
            views, resp.revision = self.switch.at_revision(
                lambda: self.switch.flows_list(request.bridge))
            for view in views:
                convert.fill_flow(resp.flows.add(), view)
        return resp

    # ---- lifecycle -------------------------------------------------------------------------------

    @_rpc
    def Shutdown(self, request: pb.ShutdownRequest) -> pb.ShutdownResponse:  # noqa: N802
        self.switch.request_shutdown(request.cleanup)
        return pb.ShutdownResponse()

    # ---- tracing ---------------------------------------------------------------------------------

    @_rpc
    def Trace(self, request: pb.TraceRequest) -> pb.TraceResponse:  # noqa: N802
        report = self.switch.trace(request.bridge, match_dict(request.packet),
                                   request.truncate)
        return convert.trace_msg(report)

    @_rpc
    def GetWatchConfig(self, request: pb.GetWatchConfigRequest) -> pb.WatchConfig:  # noqa: N802
        return convert.watch_config_msg(self.switch.watch_config())

    @_rpc
    def UpdateWatchConfig(  # noqa: N802
        self, request: pb.UpdateWatchConfigRequest
    ) -> pb.WatchConfig:
        _only_paths(request, {"rate_limit"})
        return convert.watch_config_msg(self.switch.set_watch_rate(request.config.rate_limit))

    def Watch(self, request: pb.WatchRequest,  # noqa: N802
              context: grpc.ServicerContext) -> Iterator[pb.WatchMessage]:
        """Stream the bridge's decisions until the client leaves, `count` events were sent, or
        the daemon stops; the datapath watcher is removed in every case."""
        def open_session() -> Any:
            return self.switch.watch_open(
                request.bridge, request.port,
                match_dict(request.match) if request.HasField("match") else None,
                request.drops_only)

        yield from _serve_stream(context, "Watch", open_session, convert.watch_event_msg,
                                 lambda lost: convert.watch_lost_msg(lost.count), request.count)

    # ---- packet-out ------------------------------------------------------------------------------

    @_rpc
    def SendPacket(self, request: pb.SendPacketRequest) -> pb.SendPacketResponse:  # noqa: N802
        where = request.WhichOneof("where")
        frame = request.WhichOneof("frame")
        length = self.switch.send_packet(
            request.bridge,
            out_port=request.out_port if where == "out_port" else "",
            in_port=request.in_port if where == "in_port" else "",
            data=request.data if frame == "data" else None,
            packet=match_dict(request.packet) if frame == "packet" else None)
        return pb.SendPacketResponse(length=length)

    # ---- packet-in -------------------------------------------------------------------------------

    def SubscribePacketIn(self, request: pb.PacketInRequest,  # noqa: N802
                          context: grpc.ServicerContext) -> Iterator[pb.PacketInMessage]:
        """Stream the packet-ins of the bridges (none: of every bridge) until the client leaves
        or the daemon stops; the subscription ends in every case."""
        yield from _serve_stream(context, "SubscribePacketIn",
                                 lambda: self.switch.packet_in_open(list(request.bridges)),
                                 convert.packet_in_msg,
                                 lambda lost: convert.packet_in_lost_msg(lost.count))

    @_rpc
    def GetPacketInConfig(  # noqa: N802
        self, request: pb.GetPacketInConfigRequest
    ) -> pb.PacketInConfig:
        return convert.packet_in_config_msg(self.switch.packet_in_config())

    @_rpc
    def UpdatePacketInConfig(  # noqa: N802
        self, request: pb.UpdatePacketInConfigRequest
    ) -> pb.PacketInConfig:
        _only_paths(request, {"rate_limit"})
        return convert.packet_in_config_msg(
            self.switch.set_packet_in_rate(request.config.rate_limit))

    # ---- events ----------------------------------------------------------------------------------

    def Subscribe(self, request: pb.SubscribeRequest,  # noqa: N802
                  context: grpc.ServicerContext) -> Iterator[pb.Event]:
        """Stream the events after since_revision (or from now) until the client leaves or the
        daemon stops. Reads from the shared event log at the client's pace: a client that falls
        behind gets a `lost` marker, never an unbounded queue."""
        def open_cursor() -> Any:
            return self.switch.subscribe(
                request.since_revision if request.HasField("since_revision") else None,
                convert.event_kinds(request.kinds), list(request.bridges))

        yield from _serve_stream(context, "Subscribe", open_cursor, self._event_msgs.get,
                                 convert.lost_msg)
