"""Config-declared bridges (vswitchd.desired): parsing with FILE:LINE errors, diffs applied
through the Switch, --check-config."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fakes import Rig  # noqa: F401 - makes vswitchd.datapath export the fake shapes

from vswitchd import config, desired

GOOD = """\
log_level: info
bridges:
  br0:
    datapath: ebpf
    ip: [10.0.0.1/24]
    ports:
      c1: {type: veth, netns: c1, ip: [10.0.0.2/24], mac: "02:00:00:00:00:02"}
      t1: {type: tap}
    fdb:
      - {mac: "02:00:00:00:00:99", port: t1}
    flows:
      - "priority=100,udp,tp_dst=53,actions=drop"
  kbr:
    datapath: kernel
"""


def test_parse_declared_bridges():
    cfg = config.parse(GOOD, "v.yaml")
    assert sorted(cfg.bridges) == ["br0", "kbr"]
    br = cfg.bridges["br0"]
    assert br.spec.addresses == ["10.0.0.1/24"] and br.where == "v.yaml:4"
    assert br.ports["c1"].netns == "c1" and br.ports["t1"].type == "tap"
    assert list(br.fdb) == [("02:00:00:00:00:99", 0)]
    assert list(br.flows) == ["priority=100,udp,tp_dst=53,actions=drop"]
    assert config.parse("log_level: info\n").bridges is None  # no section: not managed


@pytest.mark.parametrize("text, expected", [
    ("bridges:\n  br0:\n    colour: red\n", "f.yaml:3: unknown key 'bridges.br0.colour'"),
    ("bridges:\n  br0:\n    datapath: fast\n", "f.yaml:3: bridges.br0.datapath: 'fast' is not"),
    ("bridges:\n  br0:\n    ports:\n      p1: {type: geneve}\n",
     "f.yaml:4: bridges.br0.ports.p1.type: 'geneve' is not one of"),
    ("bridges:\n  br0:\n    ports:\n      p1: {type: vxlan}\n",
     "f.yaml:4: bridges.br0.ports.p1.vni: 0: must be a VXLAN network identifier"),
    ("bridges:\n  br0:\n    ports:\n      p1: {type: veth, remotes: [10.0.0.2]}\n",
     "f.yaml:4: bridges.br0.ports.p1.remotes: applies only to vxlan ports"),
    ("bridges:\n  br0:\n    ports:\n      p1: {type: tap, netns: x}\n",
     "f.yaml:4: bridges.br0.ports.p1.netns: applies only to veth ports"),
    ("bridges:\n  br0:\n    ip: [10.0.0.300/24]\n", "f.yaml:3: ip '10.0.0.300/24'"),
    ("bridges:\n  br0:\n    fdb:\n      - {port: p1}\n", "f.yaml:4: bridges.br0.fdb: 'mac' is"),
    ("bridges:\n  br0:\n    flows:\n      - \"priority=1,bogus=2,actions=drop\"\n",
     "f.yaml:4: flow 'priority=1,bogus=2,actions=drop'"),
    ("bridges:\n  br0:\n    ports:\n      p1: {mtu: many}\n",
     "f.yaml:4: bridges.br0.ports.p1.mtu: expected int"),
    ("bridges:\n  a-very-long-bridge-name:\n", "f.yaml:2: bridge"),
])
def test_bad_declarations_name_file_and_line(text, expected):
    with pytest.raises(config.ConfigError) as exc:
        config.parse(text, "f.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_json_round_trip():
    declared = config.parse(GOOD, "v.yaml").bridges
    assert desired.from_json(desired.to_json(declared)) == declared


class Recorder:
    """Stands in for the Switch: records the calls the diff makes."""

    def __init__(self, fail: str = "") -> None:
        self.calls: list[tuple] = []
        self.fail = fail

    def __getattr__(self, name):
        def call(*args, **kw):
            from vswitchd.errors import FailedPrecondition

            arg = args[1] if len(args) > 1 else args[0]
            self.calls.append((name, getattr(arg, "name", arg)))
            if self.fail and self.fail == name:
                raise FailedPrecondition("no")
            return True

        return call


def test_apply_only_the_difference():
    old = config.parse(GOOD, "v.yaml").bridges
    sw = Recorder()
    applied, changes, errors = desired.apply(sw, {}, old)
    assert (errors, applied) == (0, old)
    assert [c[0] for c in sw.calls] == ["create_bridge", "create_port", "create_port", "fdb_add",
                                        "flows_add_if_absent", "create_bridge"]
    new_text = (GOOD.replace("      t1: {type: tap}\n", "      t2: {type: tap}\n")
                .replace("port: t1", "port: t2").replace("  kbr:\n    datapath: kernel\n", ""))
    new = config.parse(new_text, "v.yaml").bridges
    sw = Recorder()
    applied, changes, errors = desired.apply(sw, old, new)
    assert applied == new and errors == 0
    assert sw.calls == [("delete_bridge", "kbr"), ("fdb_delete", "02:00:00:00:00:99"),
                        ("delete_port", "t1"), ("create_port", "t2"),
                        ("fdb_add", "02:00:00:00:00:99")]
    sw = Recorder()
    assert desired.apply(sw, new, new)[1:] == (0, 0) and sw.calls == []


def test_failed_items_are_left_out_of_the_record_and_retried():
    new = config.parse(GOOD, "v.yaml").bridges
    sw = Recorder(fail="fdb_add")
    applied, _changes, errors = desired.apply(sw, {}, new)
    assert errors == 1 and applied["br0"].fdb == {}
    sw = Recorder()
    desired.apply(sw, applied, new)
    assert sw.calls == [("fdb_add", "02:00:00:00:00:99")]


def test_check_config_exit_codes(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("type: tap", "type: geneve"))
    run = [sys.executable, "-m", "vswitchd.main", "--check-config", "--config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    no = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert no.returncode == 1
    assert f"{bad}:8: bridges.br0.ports.t1.type: 'geneve'" in no.stderr


TOPOLOGY = """\
bridges:
  br0:
    ip: [10.9.0.1/24]
    nat: true
    ports:
      c1: {netns: c1, ip: [10.9.0.2/24], gateway: 10.9.0.1, vlan: 10}
      t1: {type: tap, trunks: [20, 30], native_vlan: 5, multi_queue: true}
      eth9: {type: system, uplink: true}
"""


def test_the_file_declares_what_the_api_can(monkeypatch, tmp_path):
    """VLANs, trunks, gateway, uplink, multi-queue and NAT: the keys are the specs' fields."""
    from fakes import make_rig

    declared = config.parse(TOPOLOGY, "t.yaml").bridges
    br = declared["br0"]
    assert br.spec.nat and br.ports["c1"].gateway == "10.9.0.1" and br.ports["c1"].vlan == 10
    assert (br.ports["t1"].trunks, br.ports["t1"].native_vlan, br.ports["t1"].multi_queue) == (
        [20, 30], 5, True)
    assert br.ports["eth9"].uplink
    rig = make_rig(monkeypatch, str(tmp_path))
    rig.links.add_system("eth9")
    applied, changes, errors = desired.apply(rig.switch, {}, declared)
    assert (errors, changes) == (0, 4) and applied == declared
    ports = {p.spec.name: p.spec for p in rig.switch.list_ports("br0")}
    assert (ports["c1"].vlan_mode(), ports["t1"].vlan_mode()) == ("access:10",
                                                                  "trunk:20,30/native:5")
    assert rig.links.gateways["c1"] == "10.9.0.1" and rig.links.multi_queue["t1"]
    assert rig.nat.rules == {"br0": "10.9.0.0/24"}
    # nat off in the file: the bridge stays, its NAT rule goes
    off = config.parse(TOPOLOGY.replace("nat: true", "nat: false"), "t.yaml").bridges
    applied, changes, errors = desired.apply(rig.switch, applied, off)
    assert (errors, changes) == (0, 1) and rig.nat.rules == {} and rig.links.get("br0")


@pytest.mark.parametrize("line, expected", [
    ("      p1: {vlan: 4095}", "f.yaml:4: bridges.br0.ports.p1.vlan: 4095: must be in 1..4094"),
    ("      p1: {trunks: [10, x]}",
     "f.yaml:4: bridges.br0.ports.p1.trunks: expected a list of integers, got 'x'"),
    ("      p1: {type: tap, uplink: true}",
     "f.yaml:4: bridges.br0.ports.p1.uplink: applies only to system ports"),
    ("      p1: {gateway: 10.0.0.1}",
     "f.yaml:4: bridges.br0.ports.p1.gateway: '10.0.0.1': is outside the port's subnets"),
    ("      p1: {colour: red}", "f.yaml:4: unknown key 'bridges.br0.ports.p1.colour'"),
    ("      é: {type: veth}",
     "f.yaml:4: bridges.br0.ports.é.port: 'é': cannot name its network namespace"),
    ("      à: {type: tap}", "f.yaml:4: port 'à': must not contain 'à'"),
    ("      p1: {peer_name: eà}", "f.yaml:4: bridges.br0.ports.p1.peer_name: 'eà': must not"),
])
def test_bad_port_keys_name_file_line_and_key(line, expected):
    with pytest.raises(config.ConfigError) as exc:
        config.parse(f"bridges:\n  br0:\n    ports:\n{line}\n", "f.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_an_applied_record_of_an_earlier_build_reads_as_the_same_declarations():
    """Records written before the keys came from the specs (every port key, "" for unset)
    compare equal to the same file parsed now: an upgrade re-creates nothing."""
    old = ('{"br0": {"datapath": "ebpf", "fdb": [["02:00:00:00:00:99", 0, "t1"]], "flows": '
           '["priority=100,udp,tp_dst=53,actions=drop"], "ip": ["10.0.0.1/24"], "ports": '
           '{"c1": {"ip": ["10.0.0.2/24"], "mac": "02:00:00:00:00:02", "mtu": 0, "name": "c1", '
           '"netns": "c1", "owner": "", "peer_name": "", "type": "veth"}, "t1": {"ip": [], '
           '"mac": "", "mtu": 0, "name": "t1", "netns": "", "owner": "", "peer_name": "", '
           '"type": "tap"}}}, "kbr": {"datapath": "kernel", "fdb": [], "flows": [], "ip": [], '
           '"ports": {}}}')
    assert desired.from_json(old) == config.parse(GOOD, "v.yaml").bridges


def test_declared_addresses_follow_the_apis_rules():
    for ips, says in (("[10.0.0.1/24, 10.0.0.1/25]", "ip '10.0.0.1/25': is given twice"),
                      ("[10.0.0.0/24]", "ip '10.0.0.0/24': is the network address"),
                      ("[ff02::1/64]", "ip 'ff02::1/64': is a multicast address")):
        with pytest.raises(config.ConfigError) as ei:
            config.parse(f"bridges:\n  br0:\n    ip: {ips}\n", "f.yaml")
        assert str(ei.value).startswith(f"f.yaml:3: {says}"), str(ei.value)
    with pytest.raises(config.ConfigError) as ei:
        config.parse("bridges:\n  br0:\n    ports:\n      p1: {ip: [10.0.0.2/24, 10.0.0.2/24]}\n",
                     "f.yaml")
    assert str(ei.value).startswith("f.yaml:4: bridges.br0.ports.p1.ip: '10.0.0.2/24': is given")


def test_one_name_rule_for_declared_bridges_and_ports():
    cfg = config.parse("bridges:\n  é:\n    ports:\n      ü: {type: tap}\n"
                       "      ö: {netns: ns1}\n  😀:\n", "f.yaml")
    assert sorted(cfg.bridges) == ["é", "😀"] and sorted(cfg.bridges["é"].ports) == ["ö", "ü"]
    with pytest.raises(config.ConfigError, match="f.yaml:2: bridge 'à': must not contain 'à'"):
        config.parse("bridges:\n  à:\n", "f.yaml")
