"""The switch-wide watch event rate limit: the config key, the Switch (datapath, store, restart),
config-declared values at start and on SIGHUP, the API mapping, `vswctl set-watch-rate`."""

from __future__ import annotations

import errno

import grpc
import pytest
from fakes import make_rig, serve_switch
from test_vswctl import Daemon, FakeSwitch, daemon, short_dir  # noqa: F401 - fixtures

from vswapi import switch_pb2 as pb
from vswctl.main import MAX_WATCH_RATE
from vswitchd import config, main
from vswitchd.datapath.watch import MAX_RATE, WATCH_DEFAULT_RATE
from vswitchd.errors import FailedPrecondition, InvalidArgument
from vswitchd.state import StateError
from vswitchd.trace import ratelimit

RANGE = f"in 1..{MAX_RATE}"
BAD = [0, -5, MAX_RATE + 1, 1.5, "fast", True, None]


@pytest.fixture
def rig(monkeypatch, tmp_path):
    return make_rig(monkeypatch, str(tmp_path / "state"))


# ---- configuration ---------------------------------------------------------------------------


def test_config_key_and_defaults():
    assert config.load(None).watch.rate_limit is None  # not declared: the rate is left alone
    cfg = config.parse("log_level: info\nwatch:\n  rate_limit: 500\n", "f.yaml")
    assert cfg.watch.rate_limit == 500 and cfg.origins["watch.rate_limit"] == "f.yaml:3"
    assert config.parse("watch:\n", "f.yaml").watch.rate_limit is None


@pytest.mark.parametrize("text, expected", [
    ("watch:\n  rate_limit: 0\n", f"f.yaml:2: watch.rate_limit: 0 must be a whole number of "
                                  f"events per second per CPU {RANGE} (default 10000)"),
    ("watch:\n  rate_limit: -3\n", "f.yaml:2: watch.rate_limit: -3 must be a whole number"),
    ("watch:\n  rate_limit: 1000000001\n", f"watch.rate_limit: 1000000001 must be a whole "
                                           f"number of events per second per CPU {RANGE}"),
    ("watch:\n  rate_limit: 1.5\n", "f.yaml:2: watch.rate_limit: 1.5 must be a whole number"),
    ("watch:\n  rate_limit: fast\n", "f.yaml:2: watch.rate_limit: 'fast' must be a whole"),
    ("watch:\n  rate_limit: true\n", "f.yaml:2: watch.rate_limit: True must be a whole"),
    ("watch:\n  burst: 3\n",
     "f.yaml:2: unknown key 'watch.burst' (known: rate_limit, max_watchers)"),
    ("watch: 5\n", "f.yaml:1: watch must be a mapping"),
    ("watch:\n  rate_limit: 1\n  rate_limit: 2\n", "f.yaml:3: duplicate key 'rate_limit'"),
])
def test_config_errors_name_file_line_value_and_range(text, expected):
    with pytest.raises(config.ConfigError) as exc:
        config.parse(text, "f.yaml")
    assert expected in str(exc.value), str(exc.value)


# ---- the switch: datapath, store, restart ----------------------------------------------------


def test_set_applies_stores_and_survives_a_restart(rig):
    sw = rig.switch
    assert sw.watch_config() == {"rate_limit": WATCH_DEFAULT_RATE}
    assert sw.status().watch_rate_limit == WATCH_DEFAULT_RATE
    assert sw.set_watch_rate(5) == {"rate_limit": 5}
    assert rig.dp.rate == 5 and sw.status().watch_rate_limit == 5
    rig.dp.rate = WATCH_DEFAULT_RATE  # the restarted daemon's datapath instance starts afresh
    again = rig.new_switch()
    assert again.watch_config() == {"rate_limit": 5}
    again.reconcile()
    assert rig.dp.rate == 5


@pytest.mark.parametrize("value", BAD)
def test_bad_values_are_refused_and_change_nothing(rig, value):
    rig.switch.set_watch_rate(7)
    with pytest.raises(InvalidArgument) as exc:
        rig.switch.set_watch_rate(value)
    assert exc.value.field == "rate_limit"
    assert f"rate_limit {value!r}: must be a whole number" in str(exc.value)
    assert RANGE in str(exc.value)
    assert rig.dp.rate == 7 and rig.switch.watch_config() == {"rate_limit": 7}
    assert ratelimit.stored(rig.new_switch().store) == 7


def test_a_store_that_cannot_be_written_undoes_the_datapath_change(rig, monkeypatch):
    def full(key, value):
        raise OSError(errno.ENOSPC, "database or disk is full")

    monkeypatch.setattr(rig.switch.store, "set_meta", full)
    with pytest.raises(FailedPrecondition, match="cannot write state store"):
        rig.switch.set_watch_rate(5)
    assert rig.dp.rate == WATCH_DEFAULT_RATE
    assert rig.switch.watch_config() == {"rate_limit": WATCH_DEFAULT_RATE}


def test_without_ebpf_the_rate_is_refused(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), ebpf=False, reason="no bpf() here")
    with pytest.raises(FailedPrecondition, match="eBPF datapath unavailable"):
        r.switch.set_watch_rate(5)


def test_a_damaged_record_stops_the_start(rig):
    rig.switch.store.set_meta(ratelimit.STORE_KEY, "fast")
    with pytest.raises(StateError, match="watch rate limit record 'fast' is damaged"):
        ratelimit.stored(rig.switch.store)


# ---- the configuration file at start and on SIGHUP ------------------------------------------


def test_declared_rate_is_applied_like_declared_bridges(rig, tmp_path):
    path = tmp_path / "v.yaml"

    def declare(text: str) -> config.Config:
        path.write_text(text)
        return config.load(str(path))

    cfg = declare("watch:\n  rate_limit: 50\n")
    main.apply_declared(rig.switch, rig.switch.store, cfg)        # start
    assert rig.dp.rate == 50
    rig.switch.set_watch_rate(70)                                  # over the API
    assert main.reload_config(str(path), rig.switch, rig.switch.store, cfg)
    assert rig.dp.rate == 70                                       # unchanged file: API stays
    sw = rig.new_switch()                                          # restart, same file
    sw.reconcile()
    main.apply_declared(sw, sw.store, cfg)
    assert rig.dp.rate == 70 and sw.watch_config() == {"rate_limit": 70}
    declare("watch:\n  rate_limit: 90\n")                          # the file changed: it wins
    assert main.reload_config(str(path), sw, sw.store, cfg)
    assert rig.dp.rate == 90
    declare("log_level: info\n")                                   # undeclared: left alone
    assert main.reload_config(str(path), sw, sw.store, cfg)
    assert rig.dp.rate == 90
    sw.set_watch_rate(100)
    declare("watch:\n  rate_limit: 90\n")                          # declared again: applied
    assert main.reload_config(str(path), sw, sw.store, cfg)
    assert rig.dp.rate == 90
    path.write_text("watch:\n  rate_limit: 0\n")                   # a bad file changes nothing
    assert not main.reload_config(str(path), sw, sw.store, cfg)
    assert rig.dp.rate == 90 and ratelimit.stored(sw.store) == 90


def test_a_declared_rate_that_fails_is_retried(monkeypatch, tmp_path):
    r = make_rig(monkeypatch, str(tmp_path / "state"), ebpf=False, reason="no bpf() here")
    cfg = config.parse("watch:\n  rate_limit: 50\n", "v.yaml")
    main.apply_declared(r.switch, r.switch.store, cfg)  # logged, not recorded as applied
    assert r.switch.store.get_meta(ratelimit.APPLIED_KEY) is None
    assert r.switch.watch_config() == {"rate_limit": WATCH_DEFAULT_RATE}


# ---- API ---------------------------------------------------------------------------------


def test_api_get_update_and_status(rig):
    with serve_switch(rig.switch) as stub:
        assert stub.GetWatchConfig(pb.GetWatchConfigRequest()).rate_limit == WATCH_DEFAULT_RATE
        req = pb.UpdateWatchConfigRequest(config=pb.WatchConfig(rate_limit=5))
        req.update_mask.paths.append("rate_limit")
        assert stub.UpdateWatchConfig(req).rate_limit == 5
        assert rig.dp.rate == 5
        assert stub.GetWatchConfig(pb.GetWatchConfigRequest()).rate_limit == 5
        assert stub.GetStatus(pb.GetStatusRequest()).watch_rate_limit == 5
        for rate in (0, MAX_RATE + 1):
            req.config.rate_limit = rate
            with pytest.raises(grpc.RpcError) as exc:
                stub.UpdateWatchConfig(req)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert f"rate_limit {rate}: must be a whole number" in exc.value.details()
            assert RANGE in exc.value.details()
        for paths, named in (([], "update_mask ''"), (["burst"], "update_mask 'burst'")):
            bad = pb.UpdateWatchConfigRequest(config=pb.WatchConfig(rate_limit=9))
            bad.update_mask.paths.extend(paths)
            with pytest.raises(grpc.RpcError) as exc:
                stub.UpdateWatchConfig(bad)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert named in exc.value.details() and "rate_limit" in exc.value.details()
        assert rig.dp.rate == 5  # nothing refused changed anything


# ---- vswctl ------------------------------------------------------------------------------


def test_vswctl_set_watch_rate(daemon):  # noqa: F811
    daemon.fake.responses["UpdateWatchConfig"] = pb.WatchConfig(rate_limit=5)
    rc, out, err = daemon.run("set-watch-rate", "5")
    assert (rc, out, err) == (0, "", "")
    req = daemon.fake.only("UpdateWatchConfig")
    assert (req.config.rate_limit, list(req.update_mask.paths)) == (5, ["rate_limit"])
    assert daemon.json("set-watch-rate", "5") == {"rate_limit": 5}


@pytest.mark.parametrize("arg", ["0", "-5", "1.5", "fast", str(MAX_WATCH_RATE + 1), ""])
def test_vswctl_bad_rates_are_usage_errors_naming_value_and_range(daemon, arg):  # noqa: F811
    rc, out, err = daemon.run("set-watch-rate", arg)
    assert rc == 1 and out == ""
    assert f"must be a whole number of events per second per CPU in 1..{MAX_WATCH_RATE}" in err
    assert (arg.lstrip("-") or "''") in err
    assert daemon.fake.requests == []


def test_vswctl_refusal_and_the_shared_range(daemon):  # noqa: F811
    assert MAX_WATCH_RATE == MAX_RATE  # the client's check is the daemon's range
    daemon.fake.errors["UpdateWatchConfig"] = (
        grpc.StatusCode.FAILED_PRECONDITION, "eBPF datapath unavailable: no bpf() here")
    rc, _, err = daemon.run("set-watch-rate", "5")
    assert rc == 2 and "FAILED_PRECONDITION: eBPF datapath unavailable" in err
