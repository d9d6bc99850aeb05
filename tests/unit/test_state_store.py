"""The SQLite desired-state store: round trip, diffs, damage, migration from state.json."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import FrozenInstanceError, replace

import pytest

from vswitchd.flows.model import Rule
from vswitchd.flows.table import FlowTable
from vswitchd.model import Bridge, BridgeSpec, Port, PortFacts, PortSpec, StaticFdb
from vswitchd.state import StateError, StateStore

RULE = "7 100 0x0 0 0 1700000000.000 dl_type=0x0800 nw_proto=17 tp_dst=53 actions drop"


def sample() -> dict[str, Bridge]:
    rules = [Rule.from_store(RULE, 1700000000.0, 0)]
    br = Bridge(BridgeSpec("br0", "ebpf", ["10.0.0.1/24"]),
                {"c1": Port(PortSpec("c1", "veth", "ns1", "eth0", ["10.0.0.2/24"], "", 0, ""),
                            PortFacts(netns_created=True)),
                 "t1": Port(PortSpec("t1", "tap", owner="root"))},
                [StaticFdb("02:00:00:00:00:01", "c1", 0)],
                FlowTable(rules, next_id=8))
    return {"br0": br, "kbr": Bridge(BridgeSpec("kbr", "kernel"))}


def plain(bridges):
    return {n: b.to_dict() for n, b in bridges.items()}


def test_round_trip_and_wal(tmp_path):
    store = StateStore(str(tmp_path))
    assert store.load() == {}
    store.save(sample())
    assert plain(StateStore(str(tmp_path)).load()) == plain(sample())
    db = sqlite3.connect(store.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT rule_id FROM flows").fetchall() == [(7,)]


def test_save_writes_only_changed_rows(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    bridges = sample()
    store.save(bridges)
    db = sqlite3.connect(store.path)
    before = db.total_changes
    statements = []
    store._db.set_trace_callback(statements.append)
    bridges["br0"].fdb.append(StaticFdb("02:00:00:00:00:02", "t1", 5))
    store.save(bridges)
    writes = [s for s in statements if s.startswith(("INSERT", "DELETE"))]
    assert len(writes) == 1 and "fdb" in writes[0], statements
    assert db.total_changes == before
    del bridges["kbr"]
    bridges["br0"].ports.pop("t1")
    store.save(bridges)
    got = StateStore(str(tmp_path)).load()
    assert list(got) == ["br0"] and list(got["br0"].ports) == ["c1"]
    assert [(f.mac, f.vlan) for f in got["br0"].fdb] == [("02:00:00:00:00:01", 0),
                                                         ("02:00:00:00:00:02", 5)]


def test_loading_compares_with_the_stored_port_texts(tmp_path, monkeypatch):
    """A load takes the ports' rows as the database has them (encoding a thousand ports
    again took tens of milliseconds of every start); the first save then writes the rows of
    the ports whose text differs, here one stored in another key order."""
    from vswitchd import state

    store = StateStore(str(tmp_path))
    store.load()
    store.save(sample())
    db = sqlite3.connect(store.path)
    text = db.execute("SELECT spec FROM ports WHERE name='t1'").fetchone()[0]
    shuffled = json.dumps(dict(reversed(json.loads(text).items())))
    with db:
        db.execute("UPDATE ports SET spec=? WHERE name='t1'", (shuffled,))
    real = state.port_row
    monkeypatch.setattr(state, "port_row", lambda p: pytest.fail("a port encoded at load"))
    store = StateStore(str(tmp_path))
    bridges = store.load()
    monkeypatch.setattr(state, "port_row", real)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    store.save(bridges)
    writes = [s for s in statements if s.startswith(("INSERT", "DELETE"))]
    assert len(writes) == 1 and "ports" in writes[0], statements
    assert db.execute("SELECT spec FROM ports WHERE name='t1'").fetchone()[0] == text


def test_a_save_looks_only_at_the_bridges_whose_ports_changed(tmp_path, monkeypatch):
    """A change to one port costs the same whatever the other ports: the rows of a bridge
    whose ports are the same objects are taken as they were (no text asked for, no diff)."""
    from vswitchd import state

    store = StateStore(str(tmp_path))
    store.load()
    bridges = sample()
    bridges["kbr"].ports["k1"] = Port(PortSpec("k1", "tap", owner="root"))
    store.save(bridges)
    asked: list[str] = []
    real = state._PortTexts.text
    monkeypatch.setattr(state._PortTexts, "text",
                        lambda self, bridge, port: asked.append(port.name) or
                        real(self, bridge, port))
    t1 = bridges["br0"].ports["t1"]
    t1.spec = replace(t1.spec, mtu=1400)
    store.save(bridges)
    assert asked.count("t1") == 1 and "k1" not in asked, asked
    assert StateStore(str(tmp_path)).load()["br0"].ports["t1"].spec.mtu == 1400
    del bridges["kbr"].ports["k1"]  # gone: its row with it
    store.save(bridges)
    assert StateStore(str(tmp_path)).load()["kbr"].ports == {}


def test_a_port_changed_in_any_way_is_written_again(tmp_path):
    """Port rows are encoded again only for a new spec or facts object (_PortTexts): facts
    replaced, a spec replaced, a port gone and back all reach the store; facts cannot be
    changed in place."""
    store = StateStore(str(tmp_path))
    store.load()
    bridges = sample()
    store.save(bridges)
    c1 = bridges["br0"].ports["c1"]

    def stored() -> Port:
        return StateStore(str(tmp_path)).load()["br0"].ports["c1"]

    c1.facts = replace(c1.facts, peer_gro=True)
    store.save(bridges)
    assert stored().facts.peer_gro
    c1.facts = replace(c1.facts, uplink_addresses=["192.0.2.1/24"])
    store.save(bridges)
    assert stored().facts.uplink_addresses == ["192.0.2.1/24"]
    with pytest.raises(FrozenInstanceError):  # what lets a save tell them by identity
        c1.facts.peer_gro = False  # type: ignore[misc]
    c1.spec = PortSpec("c1", "veth", "ns1", "eth0", ["10.0.0.3/24"], labels={"a": "b"})
    store.save(bridges)
    assert stored().spec == c1.spec
    bridges["br0"].ports.pop("c1")
    store.save(bridges)
    bridges["br0"].ports["c1"] = c1  # gone and back with the same objects
    store.save(bridges)
    assert stored().spec == c1.spec


def test_save_writes_only_the_flow_rows_that_changed(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    bridges = sample()
    store.save(bridges)
    statements = []
    store._db.set_trace_callback(statements.append)
    table = bridges["br0"].flows
    more = [Rule.from_store(RULE.replace("7 100", f"{i} {i}").replace("53", str(i)), 0.0, 0)
            for i in range(8, 12)]
    table.add(more, iter(range(8, 12)).__next__, 1700000001.0, 0)
    table.delete(more[0].match, strict=True, priority=more[0].priority)
    store.save(bridges)
    flows = [s for s in statements if "flows" in s and s.startswith(("INSERT", "DELETE"))]
    assert len(flows) == 3 and all(s.startswith("INSERT") for s in flows), statements
    statements.clear()
    store.save(bridges)                                     # unchanged: nothing written
    assert not [s for s in statements if s.startswith(("INSERT", "DELETE"))], statements
    table.delete(more[1].match, strict=True, priority=more[1].priority)
    store.save(bridges)
    assert [s for s in statements if s.startswith(("INSERT", "DELETE"))] == [
        "DELETE FROM flows WHERE bridge='br0' AND rule_id=9"]
    got = StateStore(str(tmp_path)).load()["br0"].flows
    assert sorted(r.rule_id for r in got) == [7, 10, 11] and got == table


@pytest.mark.parametrize("content", [
    b"this is not a database at all" * 100,
    b"",  # handled: an empty file is an empty database, then fails the meta check
])
def test_garbage_store_is_refused_and_left_in_place(tmp_path, content):
    path = tmp_path / "state.db"
    path.write_bytes(content)
    with pytest.raises(StateError, match=f"{path}.*left in place"):
        StateStore(str(tmp_path)).load()
    assert path.read_bytes() == content


def test_truncated_store_is_refused(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    bridges = sample()
    for i in range(300):  # several pages
        bridges["br0"].ports[f"p{i}"] = Port(PortSpec(f"p{i}", "tap"))
    store.save(bridges)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = store.path.read_bytes()
    assert len(data) > 8192
    store.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StateError, match="damaged"):
        StateStore(str(tmp_path)).load()
    assert store.path.stat().st_size == len(data) // 2


def test_unknown_version_is_refused(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    store._db.execute("UPDATE meta SET value='99' WHERE key='version'")
    store.close()
    with pytest.raises(StateError, match="unsupported format version '99'"):
        StateStore(str(tmp_path)).load()


def test_bad_row_is_refused(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    store.save(sample())
    store._db.execute("UPDATE ports SET spec='{nope' WHERE name='c1'")
    store.close()
    with pytest.raises(StateError, match="bad row"):
        StateStore(str(tmp_path)).load()


def test_old_json_store_is_imported_once(tmp_path, caplog):
    doc = {"version": 1, "bridges": [b.to_dict() for b in sample().values()]}
    (tmp_path / "state.json").write_text(json.dumps(doc))
    with caplog.at_level("WARNING"):
        got = StateStore(str(tmp_path)).load()
    assert plain(got) == plain(sample())
    assert "imported the old state store" in caplog.text
    assert not (tmp_path / "state.json").exists()
    assert (tmp_path / "state.json.imported").exists()
    assert plain(StateStore(str(tmp_path)).load()) == plain(sample())


def test_damaged_old_json_is_refused(tmp_path):
    (tmp_path / "state.json").write_text("{")
    with pytest.raises(StateError, match="state.json is damaged"):
        StateStore(str(tmp_path)).load()
    assert not (tmp_path / "state.db").exists()


def test_save_failure_is_an_oserror_and_changes_nothing(tmp_path):
    store = StateStore(str(tmp_path))
    store.load()
    store.save(sample())
    store._db.execute("CREATE TRIGGER no BEFORE INSERT ON fdb BEGIN SELECT RAISE(ABORT, 'x'); END")
    bridges = sample()
    bridges["br0"].fdb.append(StaticFdb("02:00:00:00:00:09", "c1", 0))
    bridges["br0"].ports["t2"] = Port(PortSpec("t2", "tap"))
    with pytest.raises(OSError):
        store.save(bridges)
    assert plain(StateStore(str(tmp_path)).load()) == plain(sample())


def _mode(path) -> int:
    return path.stat().st_mode & 0o777


def test_the_store_is_private_whatever_the_directory_and_umask(tmp_path):
    import os

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    old = os.umask(0o002)
    try:
        store = StateStore(str(shared))
        store.load()
        store.save(sample())
        made = StateStore(str(tmp_path / "new" / "state"))  # the daemon makes the directory
        made.load()
        made.save(sample())
    finally:
        os.umask(old)
    for path in (store.path, made.path):
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]
        assert [_mode(p) for p in files] == [0o600] * 3, [oct(_mode(p)) for p in files]
    assert _mode(made.dir) == 0o700 and _mode(shared) == 0o777
    store.close()
    made.close()


def test_a_store_others_can_read_is_warned_about(tmp_path, caplog):
    store = StateStore(str(tmp_path))
    store.load()
    store.close()
    store.path.chmod(0o644)
    with caplog.at_level("WARNING", logger="vswitchd.state"):
        StateStore(str(tmp_path)).load()
    assert f"state store {store.path} is readable by other users (mode 0644)" in caplog.text
    assert _mode(store.path) == 0o644  # left as it is
    caplog.clear()
    store.path.chmod(0o600)
    with caplog.at_level("WARNING", logger="vswitchd.state"):
        StateStore(str(tmp_path)).load()
    assert "readable" not in caplog.text

