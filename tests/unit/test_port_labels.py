"""Port labels: free-form key/values kept with a port (the CNI plugin records its container in
them): over the API, in the store across a restart, in the configuration file, in vswctl."""

from __future__ import annotations

import grpc
import pytest
from fakes import make_rig, serve_switch
from test_vswctl import daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb
from vswitchd import config
from vswitchd.config import ConfigError
from vswitchd.errors import InvalidArgument
from vswitchd.model import BridgeSpec, PortSpec

CID = "0123456789abcdef" * 4


@pytest.fixture
def rig(monkeypatch, tmp_path):
    return make_rig(monkeypatch, str(tmp_path / "state"))


def test_labels_round_trip_over_the_api_and_survive_a_restart(rig):
    with serve_switch(rig.switch) as stub:
        stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
        made = stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
            name="p1", bridge="br0", netns="c1",
            labels={"cni.container_id": CID, "cni.ifname": "eth0"})), timeout=10)
        assert dict(made.labels) == {"cni.container_id": CID, "cni.ifname": "eth0"}
        got = stub.GetPort(pb.GetPortRequest(bridge="br0", name="p1"), timeout=10)
        assert got.labels["cni.container_id"] == CID
    again = rig.new_switch().get_port("br0", "p1")
    assert again.spec.labels == {"cni.container_id": CID, "cni.ifname": "eth0"}


@pytest.mark.parametrize("labels, field, says", [
    ({"": "x"}, "labels", "1..63"),
    ({"a b": "x"}, "labels", "1..63"),
    ({"k" * 64: "x"}, "labels", "1..63"),
    ({"k": "v" * 256}, "labels.k", "at most 255"),
    ({f"k{i}": "v" for i in range(33)}, "labels", "at most 32"),
])
def test_bad_labels_are_refused_naming_the_field(rig, labels, field, says):
    rig.switch.create_bridge(BridgeSpec("br0"))
    with pytest.raises(InvalidArgument) as ei:
        rig.switch.create_port("br0", PortSpec("p1", netns="c1", labels=labels))
    assert ei.value.field == field and says in str(ei.value)
    assert rig.links.get("p1") is None  # nothing was made


def test_bad_labels_over_grpc_are_invalid_argument(rig):
    with serve_switch(rig.switch) as stub:
        stub.CreateBridge(pb.CreateBridgeRequest(bridge=pb.Bridge(name="br0")), timeout=10)
        with pytest.raises(grpc.RpcError) as ei:
            stub.CreatePort(pb.CreatePortRequest(port=pb.Port(
                name="p1", bridge="br0", labels={"bad key": "1"})), timeout=10)
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "labels" in ei.value.details()


def test_labels_in_the_configuration_file():
    cfg = config.parse("bridges:\n  br0:\n    ports:\n      p1: {labels: {team: blue}}\n")
    assert cfg.bridges["br0"].ports["p1"].labels == {"team": "blue"}
    with pytest.raises(ConfigError, match="labels"):
        config.parse("bridges:\n  br0:\n    ports:\n      p1: {labels: [a, b]}\n")


def test_vswctl_add_port_label_and_show(daemon):  # noqa: F811
    daemon.fake.responses["CreatePort"] = pb.Port(name="p1")
    rc, _, err = daemon.run("add-port", "br0", "p1", "--label", "a=1", "--label", "b=x=y")
    assert (rc, err) == (0, "")
    assert dict(daemon.fake.only("CreatePort").port.labels) == {"a": "1", "b": "x=y"}
    rc, _, err = daemon.run("add-port", "br0", "p1", "--label", "novalue")
    assert rc != 0 and "is not KEY=VALUE" in err
    daemon.fake.responses["GetBridge"] = pb.Bridge(name="br0", ports=[
        pb.Port(name="p1", labels={"cni.container_id": "abc"})])
    rc, out, _ = daemon.run("show", "br0")
    assert rc == 0 and "labels: cni.container_id=abc" in out
