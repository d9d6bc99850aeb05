"""vswctl flow commands end to end against the in-process fake vswitchd of test_vswctl.py.

add-flow, add-flows, replace-flows, del-flows, dump-flows: argument -> request mapping, flow
files, FILE:LINE on parse errors (nothing sent) and on refusals (`flow N:` rewritten), output.
"""

from __future__ import annotations

import io
import json
import os

import grpc
import pytest
import test_vswctl

from vswapi import switch_pb2 as pb
from vswapi.flowspec import U64

# the fake daemon and its fixtures, shared with test_vswctl.py
daemon = test_vswctl.daemon
short_dir = test_vswctl.short_dir

DROP = pb.FlowAction(drop=pb.NoArgument())
NORMAL = pb.FlowAction(normal=pb.NoArgument())


def write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


# ---------------------------------------------------------------- add-flow

def test_add_flow_maps_the_rule(daemon):
    rc, out, err = daemon.run(
        "add-flow", "br0", "priority=200,in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=drop")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("AddFlows")
    assert req.bridge == "br0"
    assert list(req.flows) == [pb.Flow(
        priority=200,
        match=pb.FlowMatch(in_port="c1", dl_type=0x0800, nw_proto=6, nw_dst="10.0.0.0/24",
                           tp_dst=pb.PortMatch(port=80)),
        actions=[DROP])]


def test_add_flow_json_prints_counts(daemon):
    daemon.fake.responses["AddFlows"] = pb.AddFlowsResponse(added=0, replaced=1)
    data = daemon.json("add-flow", "br0", "cookie=0x5,udp,tp_dst=53,actions=output:dns,normal")
    assert data == {"added": 0, "replaced": 1}
    flow = daemon.fake.only("AddFlows").flows[0]
    assert flow.cookie == 5 and not flow.HasField("priority")
    assert list(flow.actions) == [pb.FlowAction(output="dns"), NORMAL]


@pytest.mark.parametrize("text, message", [
    ("priority=70000,actions=drop", "priority 70000 out of range 0..65535"),
    ("nw_dsst=10.0.0.1,actions=drop", "unknown field nw_dsst"),
    ("tcp,tp_dst=80", "actions= is missing"),
    ("actions=outptu:c1", "unknown action outptu:c1"),
])
def test_add_flow_parse_error_exit_1_nothing_sent(daemon, text, message):
    rc, out, err = daemon.run("add-flow", "br0", text)
    assert (rc, out, err) == (1, "", f"vswctl: {message}\n")
    assert daemon.fake.requests == []


def test_add_flow_refusal_drops_the_flow_1_prefix(daemon):
    daemon.fake.errors["AddFlows"] = (grpc.StatusCode.INVALID_ARGUMENT,
                                      "flow 1: tp_dst=80 needs tcp or udp")
    rc, out, err = daemon.run("add-flow", "br0", "tp_dst=80,actions=drop")
    assert (rc, out) == (2, "")
    assert err == "vswctl: INVALID_ARGUMENT: tp_dst=80 needs tcp or udp\n"


def test_add_flow_other_refusals_unchanged(daemon):
    daemon.fake.errors["AddFlows"] = (grpc.StatusCode.NOT_FOUND, "bridge br9 not found")
    rc, out, err = daemon.run("add-flow", "br9", "actions=drop")
    assert (rc, out, err) == (2, "", "vswctl: NOT_FOUND: bridge br9 not found\n")


# ---------------------------------------------------------------- add-flows

FLOW_FILE = """\
# web tier
priority=200,in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80,actions=drop

   # indented comment
  priority=100 , udp , tp_dst=53 , actions=output:dns

priority=10,actions=normal
"""


def test_add_flows_file_with_comments_and_blank_lines(daemon, short_dir):
    path = write(short_dir, "flows.txt", FLOW_FILE)
    rc, out, err = daemon.run("add-flows", "br0", path)
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("AddFlows")
    assert req.bridge == "br0"
    assert [f.priority for f in req.flows] == [200, 100, 10]
    assert req.flows[1] == pb.Flow(priority=100,
                                   match=pb.FlowMatch(dl_type=0x800, nw_proto=17,
                                                      tp_dst=pb.PortMatch(port=53)),
                                   actions=[pb.FlowAction(output="dns")])
    assert list(req.flows[2].actions) == [NORMAL] and req.flows[2].match == pb.FlowMatch()


def test_add_flows_json_counts(daemon, short_dir):
    daemon.fake.responses["AddFlows"] = pb.AddFlowsResponse(added=2, replaced=1)
    path = write(short_dir, "flows.txt", FLOW_FILE)
    assert daemon.json("add-flows", "br0", path) == {"added": 2, "replaced": 1}


def test_add_flows_from_stdin(daemon, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("# x\narp,actions=flood\nicmp,actions=drop\n"))
    rc, out, err = daemon.run("add-flows", "br0", "-")
    assert (rc, out, err) == (0, "", "")
    flows = daemon.fake.only("AddFlows").flows
    assert [(f.match.dl_type, f.actions[0].WhichOneof("action")) for f in flows] == [
        (0x0806, "flood"), (0x0800, "drop")]


def test_add_flows_parse_errors_name_file_and_line_nothing_sent(daemon, short_dir):
    path = write(short_dir, "bad.txt", "# ok\npriority=1,actions=drop\n\n"
                                       "priority=70000,actions=drop\n"
                                       "tcp,tp_dst=abc,actions=drop\n"
                                       "udp,actions=normal\n")
    rc, out, err = daemon.run("add-flows", "br0", path)
    assert (rc, out) == (1, "")
    assert err == (f"vswctl: {path}:4: priority 70000 out of range 0..65535\n"
                   f"vswctl: {path}:5: tp_dst=abc: not a port number\n")
    assert daemon.fake.requests == []


def test_add_flows_stdin_parse_error(daemon, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("actions=drop\nnw_dsst=1,actions=drop\n"))
    rc, out, err = daemon.run("add-flows", "br0", "-")
    assert (rc, out, err) == (1, "", "vswctl: <stdin>:2: unknown field nw_dsst\n")
    assert daemon.fake.requests == []


def test_add_flows_many_bad_lines_are_capped(daemon, short_dir):
    path = write(short_dir, "bad.txt", "tpc,actions=drop\n" * 25)
    rc, _, err = daemon.run("add-flows", "br0", path)
    lines = err.splitlines()
    assert rc == 1 and len(lines) == 21
    assert lines[0] == f"vswctl: {path}:1: unknown field tpc"
    assert lines[19] == f"vswctl: {path}:20: unknown field tpc"
    assert lines[20] == f"vswctl: {path}: ... and 5 more bad lines"


def test_add_flows_missing_file_exit_1(daemon, short_dir):
    path = os.path.join(short_dir, "absent.txt")
    rc, out, err = daemon.run("add-flows", "br0", path)
    assert (rc, out, err) == (1, "", f"vswctl: {path}: No such file or directory\n")
    assert daemon.fake.requests == []


def test_add_flows_refusal_rewritten_to_file_and_line(daemon, short_dir):
    path = write(short_dir, "flows.txt", FLOW_FILE)
    # flow 2 of the request is the rule on line 5 of the file
    daemon.fake.errors["AddFlows"] = (
        grpc.StatusCode.INVALID_ARGUMENT,
        "flow 2: overlaps priority=100,udp,tp_src=1000,actions=drop at the same priority")
    rc, out, err = daemon.run("add-flows", "br0", path)
    assert (rc, out) == (2, "")
    assert err == (f"vswctl: INVALID_ARGUMENT: {path}:5: overlaps "
                   "priority=100,udp,tp_src=1000,actions=drop at the same priority\n")
    assert len(daemon.fake.only("AddFlows").flows) == 3


def test_add_flows_refusal_flow_3_is_line_7(daemon, short_dir):
    path = write(short_dir, "flows.txt", FLOW_FILE)
    daemon.fake.errors["AddFlows"] = (grpc.StatusCode.INVALID_ARGUMENT,
                                      "flow 3: in_port=c9: no such port")
    rc, _, err = daemon.run("add-flows", "br0", path)
    assert rc == 2 and err == f"vswctl: INVALID_ARGUMENT: {path}:7: in_port=c9: no such port\n"


def test_add_flows_refusal_index_out_of_range_left_alone(daemon, short_dir):
    path = write(short_dir, "flows.txt", FLOW_FILE)
    daemon.fake.errors["AddFlows"] = (grpc.StatusCode.RESOURCE_EXHAUSTED,
                                      "flow 9: too many distinct masks (max 32)")
    rc, _, err = daemon.run("add-flows", "br0", path)
    assert rc == 2
    assert err == "vswctl: RESOURCE_EXHAUSTED: flow 9: too many distinct masks (max 32)\n"


# ---------------------------------------------------------------- replace-flows

def test_replace_flows_maps_every_rule(daemon, short_dir):
    daemon.fake.responses["ReplaceFlows"] = pb.ReplaceFlowsResponse(added=1, removed=4,
                                                                    unchanged=2)
    path = write(short_dir, "flows.txt", FLOW_FILE)
    rc, out, err = daemon.run("replace-flows", "br0", path)
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("ReplaceFlows")
    assert req.bridge == "br0" and [f.priority for f in req.flows] == [200, 100, 10]
    daemon.fake.requests.clear()
    assert daemon.json("replace-flows", "br0", path) == {"added": 1, "removed": 4,
                                                         "unchanged": 2}


def test_replace_flows_empty_file_empties_the_table(daemon, short_dir):
    path = write(short_dir, "empty.txt", "# nothing\n\n")
    assert daemon.run("replace-flows", "br0", path) == (0, "", "")
    req = daemon.fake.only("ReplaceFlows")
    assert req.bridge == "br0" and list(req.flows) == []


def test_replace_flows_parse_error_nothing_sent(daemon, short_dir):
    path = write(short_dir, "bad.txt", "actions=drop\nactions=output\n")
    rc, out, err = daemon.run("replace-flows", "br0", path)
    assert (rc, out, err) == (1, "", f"vswctl: {path}:2: output needs a port (output:PORT)\n")
    assert daemon.fake.requests == []


def test_replace_flows_refusal_rewritten(daemon, short_dir):
    path = write(short_dir, "flows.txt", "\n\n# c\ntp_dst=80,actions=drop\n")
    daemon.fake.errors["ReplaceFlows"] = (grpc.StatusCode.INVALID_ARGUMENT,
                                          "flow 1: tp_dst=80 needs tcp or udp")
    rc, out, err = daemon.run("replace-flows", "br0", path)
    assert (rc, out) == (2, "")
    assert err == f"vswctl: INVALID_ARGUMENT: {path}:4: tp_dst=80 needs tcp or udp\n"


# ---------------------------------------------------------------- del-flows

def test_del_flows_no_match_deletes_all(daemon):
    rc, out, err = daemon.run("del-flows", "br0")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("DeleteFlows")
    assert req == pb.DeleteFlowsRequest(bridge="br0")
    assert not req.HasField("match") and not req.HasField("priority") and not req.strict


def test_del_flows_loose(daemon):
    daemon.fake.responses["DeleteFlows"] = pb.DeleteFlowsResponse(deleted=3)
    data = daemon.json("del-flows", "br0", "tcp,nw_dst=10.0.0.0/24")
    assert data == {"deleted": 3}
    req = daemon.fake.only("DeleteFlows")
    assert req.strict is False and not req.HasField("priority")
    assert req.match == pb.FlowMatch(dl_type=0x800, nw_proto=6, nw_dst="10.0.0.0/24")
    assert (req.cookie, req.cookie_mask) == (0, 0)


def test_del_flows_strict_with_priority(daemon):
    rc, out, err = daemon.run("del-flows", "br0", "priority=200,in_port=c1,tcp,tp_dst=80",
                              "--strict")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("DeleteFlows")
    assert req.strict is True and req.HasField("priority") and req.priority == 200
    assert req.match == pb.FlowMatch(in_port="c1", dl_type=0x800, nw_proto=6,
                                     tp_dst=pb.PortMatch(port=80))


def test_del_flows_strict_without_match_sends_the_empty_match(daemon):
    assert daemon.run("del-flows", "--strict", "br0")[0] == 0
    req = daemon.fake.only("DeleteFlows")
    assert req.strict and req.HasField("match") and req.match == pb.FlowMatch()
    assert not req.HasField("priority")


def test_del_flows_by_cookie(daemon):
    assert daemon.run("del-flows", "br0", "cookie=0x1/-1")[0] == 0
    req = daemon.fake.only("DeleteFlows")
    assert (req.cookie, req.cookie_mask) == (1, U64) and not req.HasField("match")
    daemon.fake.requests.clear()
    assert daemon.run("del-flows", "br0", "cookie=0x1200/0xff00,udp")[0] == 0
    req = daemon.fake.only("DeleteFlows")
    assert (req.cookie, req.cookie_mask) == (0x1200, 0xFF00)
    assert req.match == pb.FlowMatch(dl_type=0x800, nw_proto=17)


@pytest.mark.parametrize("argv, message", [
    (["del-flows", "br0", "priority=5,tcp"],
     "priority=5 needs --strict (a loose delete ignores priority)"),
    (["del-flows", "br0", "tcp,actions=drop"], "actions= cannot be used in a match"),
    (["del-flows", "br0", "cookie=1/zz"], "cookie=1/zz: mask zz is not a number or -1"),
    (["del-flows", "br0", "nw_dsst=1"], "unknown field nw_dsst"),
])
def test_del_flows_errors_exit_1(daemon, argv, message):
    rc, out, err = daemon.run(*argv)
    assert (rc, out, err) == (1, "", f"vswctl: {message}\n")
    assert daemon.fake.requests == []


# ---------------------------------------------------------------- dump-flows

LISTED = pb.ListFlowsResponse(flows=[
    pb.Flow(priority=10, actions=[NORMAL], n_packets=1000, n_bytes=98000,
            duration_seconds=600.04, idle_seconds=0.2),
    pb.Flow(priority=200, match=pb.FlowMatch(in_port="c1", dl_type=0x800, nw_proto=6,
                                             nw_dst="10.0.0.0/24", tp_dst=pb.PortMatch(port=80)),
            actions=[DROP], n_packets=5, n_bytes=420, duration_seconds=12.34,
            idle_seconds=1.7),
    pb.Flow(priority=100, cookie=0xABC, idle_timeout=30, hard_timeout=300,
            match=pb.FlowMatch(dl_type=0x800, nw_proto=17, tp_dst=pb.PortMatch(port=53)),
            actions=[pb.FlowAction(output="m0"), NORMAL], duration_seconds=2.0,
            idle_seconds=2.0),
])


def test_dump_flows_lines_in_priority_order(daemon):
    daemon.fake.responses["ListFlows"] = LISTED
    rc, out, err = daemon.run("dump-flows", "br0")
    assert (rc, err) == (0, "")
    assert daemon.fake.only("ListFlows").bridge == "br0"
    assert out.splitlines() == [
        " cookie=0x0, duration=12.3s, n_packets=5, n_bytes=420, idle_age=1, "
        "priority=200,in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80 actions=drop",
        " cookie=0xabc, duration=2.0s, n_packets=0, n_bytes=0, idle_timeout=30, "
        "hard_timeout=300, idle_age=2, priority=100,udp,tp_dst=53 actions=output:m0,normal",
        " cookie=0x0, duration=600.0s, n_packets=1000, n_bytes=98000, idle_age=0, "
        "priority=10 actions=normal",
    ]


def test_dump_flows_json(daemon):
    daemon.fake.responses["ListFlows"] = LISTED
    data = daemon.json("dump-flows", "br0")
    assert [f["priority"] for f in data] == [200, 100, 10]
    assert data[0] == {
        "priority": 200, "cookie": "0x0",
        "match": "in_port=c1,tcp,nw_dst=10.0.0.0/24,tp_dst=80", "actions": "drop",
        "n_packets": 5, "n_bytes": 420, "duration": 12.34, "idle_age": 1.7,
        "idle_timeout": 0, "hard_timeout": 0, "revision": 0,
    }
    assert data[1]["cookie"] == "0xabc" and data[1]["actions"] == "output:m0,normal"
    assert (data[1]["idle_timeout"], data[1]["hard_timeout"]) == (30, 300)
    assert data[2]["match"] == "" and data[2]["n_bytes"] == 98000


def test_dump_flows_json_line_round_trips_through_add_flow(daemon):
    """The match and actions of dump-flows -j can be fed back to add-flow."""
    daemon.fake.responses["ListFlows"] = LISTED
    row = daemon.json("dump-flows", "br0")[0]
    text = f"priority={row['priority']},{row['match']},actions={row['actions']}"
    assert daemon.run("add-flow", "br0", text)[0] == 0
    assert daemon.fake.requests[-1][1].flows[0] == pb.Flow(
        priority=200, match=LISTED.flows[1].match, actions=[DROP])


def test_dump_flows_unset_priority_is_the_default(daemon):
    daemon.fake.responses["ListFlows"] = pb.ListFlowsResponse(flows=[pb.Flow(actions=[DROP])])
    rc, out, _ = daemon.run("dump-flows", "br0")
    assert rc == 0
    assert out == (" cookie=0x0, duration=0.0s, n_packets=0, n_bytes=0, idle_age=0, "
                   "priority=32768 actions=drop\n")


def test_dump_flows_empty(daemon):
    assert daemon.run("dump-flows", "br0") == (0, "", "")
    assert json.loads(daemon.run("-j", "dump-flows", "br0")[1]) == []


def test_dump_flows_refused(daemon):
    daemon.fake.errors["ListFlows"] = (grpc.StatusCode.FAILED_PRECONDITION,
                                       "bridge br1 uses the kernel datapath: no flow table")
    rc, out, err = daemon.run("dump-flows", "br1")
    assert (rc, out) == (2, "")
    assert err == ("vswctl: FAILED_PRECONDITION: bridge br1 uses the kernel datapath: "
                   "no flow table\n")


# ---------------------------------------------------------------- usage

@pytest.mark.parametrize("argv, message", [
    (["add-flow", "br0"], "required: FLOW"),
    (["add-flows", "br0"], "required: FILE"),
    (["replace-flows"], "required: BR, FILE"),
    (["dump-flows"], "required: BR"),
    (["del-flows"], "required: BR"),
])
def test_flow_usage_errors(daemon, argv, message):
    rc, out, err = daemon.run(*argv)
    assert (rc, out) == (1, "")
    assert message in err.splitlines()[0] and "usage: vswctl" in err
    assert daemon.fake.requests == []
