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
    ("bridges:\n  br0:\n    ports:\n      p1: {type: vxlan}\n",
     "f.yaml:4: bridges.br0.ports.p1.type: 'vxlan' is not one of"),
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
    bad.write_text(GOOD.replace("type: tap", "type: vxlan"))
    run = [sys.executable, "-m", "vswitchd.main", "--check-config", "--config"]
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    no = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert no.returncode == 1
    assert f"{bad}:8: bridges.br0.ports.t1.type: 'vxlan'" in no.stderr
