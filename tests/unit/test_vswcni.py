"""vswitchd-cni's pure parts: the environment, the network configuration, results in each
version's shape, the port's name, and the JSON the executable prints."""

from __future__ import annotations

import io
import json
import sys

import pytest

from vswcni import main as cni_main
from vswcni import netconf, plugin
from vswcni.spec import CniError, Env, Ip, Result

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "abc123", "CNI_NETNS": "/run/netns/x",
       "CNI_IFNAME": "eth0", "CNI_PATH": "/usr/lib/cni:/opt/cni/bin"}


def conf(**over: object) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "n1", "type": "vswitchd-cni",
                       **over}).encode()


def test_env_read():
    env = Env.read({**ENV, "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAME=web"})
    assert (env.command, env.container_id, env.ifname) == ("ADD", "abc123", "eth0")
    assert env.path == ("/usr/lib/cni", "/opt/cni/bin")
    assert dict(env.args) == {"IgnoreUnknown": "1", "K8S_POD_NAME": "web"}
    assert Env.read({**ENV, "CNI_COMMAND": "DEL", "CNI_NETNS": ""}).netns == ""
    assert Env.read({"CNI_COMMAND": "VERSION"}).command == "VERSION"


@pytest.mark.parametrize("change, says", [
    ({"CNI_COMMAND": "GC"}, "CNI_COMMAND"),
    ({"CNI_IFNAME": ""}, "CNI_IFNAME"),
    ({"CNI_NETNS": ""}, "CNI_NETNS"),
    ({"CNI_CONTAINERID": "-x"}, "CNI_CONTAINERID"),
    ({"CNI_ARGS": "a=1;b"}, "CNI_ARGS"),
])
def test_env_errors_are_code_4(change, says):
    with pytest.raises(CniError) as ei:
        Env.read({**ENV, **change})
    assert ei.value.code == 4 and ei.value.msg.startswith(says)


def test_netconf_defaults_and_keys():
    c = netconf.parse(conf())
    assert (c.bridge, c.socket, c.vlan, c.is_gateway, c.ipam) == (
        "cni-vsw0", "/run/vswitchd/vswitchd.sock", 0, False, {})
    c = netconf.parse(conf(bridge="b1", vlan=10, mtu=1400, isDefaultGateway=True,
                           ipam={"type": "host-local"}, runtimeConfig={"mac": "02:00:00:00:00:09"},
                           somethingElse={"ignored": True}))
    assert (c.bridge, c.vlan, c.mtu, c.is_gateway, c.mac) == ("b1", 10, 1400, True,
                                                               "02:00:00:00:00:09")


@pytest.mark.parametrize("raw, code, says", [
    (b"[1]", 6, "not a JSON object"),
    (conf(cniVersion="0.2.0"), 1, "not supported"),
    (conf(name=""), 7, "name"),
    (conf(vlan=True), 7, "vlan"),
    (conf(isGateway="yes"), 7, "isGateway"),
    (conf(ipMasq=True), 7, "ipMasq: needs ipam"),
    (conf(ipam={"subnet": "10.0.0.0/8"}), 7, "ipam.type"),
    (conf(socket="run/x.sock"), 7, "socket"),
    (conf(prevResult={"ips": [{"address": "nonsense"}]}), 6, "prevResult"),
])
def test_netconf_errors(raw, code, says):
    with pytest.raises(CniError) as ei:
        netconf.parse(raw)
    assert ei.value.code == code and says in ei.value.msg


def test_result_in_each_versions_shape():
    r = Result([{"name": "p"}, {"name": "eth0", "sandbox": "/x"}],
               [Ip("10.0.0.2/24", "10.0.0.1", 1), Ip("fd00::2/64", "", 1)],
               [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}], {})
    v1 = r.render("1.0.0")
    assert v1["ips"][0] == {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 1}
    assert "dns" not in v1 and v1["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}]
    old = r.render("0.3.1")
    assert [ip["version"] for ip in old["ips"]] == ["4", "6"]
    assert Result.parse(old, "x").ips == r.ips  # and read back


def test_port_name_is_stable_short_and_distinct():
    env = Env.read({**ENV, "CNI_CONTAINERID": "f" * 64})
    name = plugin.port_name(env, "n1")
    assert name == plugin.port_name(env, "n1") and len(name) == 15
    assert name.startswith("vcffffffff")
    other_if = Env.read({**ENV, "CNI_CONTAINERID": "f" * 64, "CNI_IFNAME": "eth1"})
    assert plugin.port_name(other_if, "n1") != name != plugin.port_name(env, "n2")
    short = plugin.port_name(Env.read({**ENV, "CNI_CONTAINERID": "a_b"}), "n1")
    assert short.startswith("vcab") and len(short) == 15
    mac = plugin.container_mac(env, "n1")
    assert mac.startswith("02:") and mac == plugin.container_mac(env, "n1")


def test_the_executable_prints_the_specs_json(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(conf(cniVersion="0.4.0"))))
    monkeypatch.setattr("os.environ", {**ENV, "CNI_COMMAND": "VERSION"})
    assert cni_main.main() == 0
    assert json.loads(capsys.readouterr().out)["supportedVersions"][-1] == "1.0.0"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        conf(cniVersion="0.4.0", socket="/nonexistent/s.sock"))))
    monkeypatch.setattr("os.environ", ENV)
    assert cni_main.main() == 1
    out = json.loads(capsys.readouterr().out)
    assert out == {"cniVersion": "0.4.0", "code": 11,
                   "msg": "vswitchd is not running: no socket /nonexistent/s.sock",
                   "details": "start it (make run, or systemctl start vswitchd)"}
