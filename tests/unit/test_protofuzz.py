"""tests/protofuzz.py reaches every field of every RPC's request (a new RPC or field is fuzzed
without more ado, or this fails naming what the strategy cannot make), with the values the API
fuzz test promises: huge strings, long repeated fields, unknown enum numbers."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, settings

from tests.protofuzz import HUGE, LONG, Hints, message, mutated
from vswapi import switch_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["Switch"]
HINTS = Hints(names=["br0", "p1"])
SEARCH = settings(max_examples=2000, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def _set(msg, fd) -> bool:
    if fd.is_repeated:
        return len(getattr(msg, fd.name)) > 0
    if fd.message_type is not None or fd.has_presence:
        return msg.HasField(fd.name)
    return getattr(msg, fd.name) != fd.default_value


@pytest.mark.parametrize("rpc", [m.name for m in SERVICE.methods])
def test_every_field_of_the_request_gets_values(rpc):
    desc = SERVICE.methods_by_name[rpc].input_type
    strategy = message(desc, HINTS)
    for fd in desc.fields:
        find(strategy, lambda m, fd=fd: _set(m, fd), settings=SEARCH)


def test_the_promised_extremes_are_made():
    port = message(pb.CreatePortRequest.DESCRIPTOR, HINTS)
    find(port, lambda r: len(r.port.name) == HUGE, settings=SEARCH)
    find(port, lambda r: len(r.port.addresses) == LONG, settings=SEARCH)
    find(port, lambda r: r.port.type not in pb.PortType.values(), settings=SEARCH)
    flows = message(pb.AddFlowsRequest.DESCRIPTOR, HINTS)
    find(flows, lambda r: any(a.WhichOneof("action") == "controller"
                              for f in r.flows for a in f.actions), settings=SEARCH)


def test_mutated_changes_a_valid_request_a_little():
    seed = pb.GetPortRequest(bridge="br0", name="p1")
    changed = find(mutated(seed, HINTS), lambda r: r != seed, settings=SEARCH)
    assert changed.bridge == "br0" or changed.name == "p1"
