"""The desired-state store: an SQLite database (stdlib sqlite3, WAL) in the state directory.

Tables: bridges, ports, static FDB entries and flow rules (with their rule ids), one row each.
Every change is one transaction, committed (and fsynced: synchronous=FULL) before the RPC that
made it returns; save() writes only the rows that differ from what the database holds, so adding
one rule to a table of 100 000 writes one row.

A store that cannot be read (not a database, truncated, failing its integrity check, unknown
format version, rows that do not parse) stops the daemon with a message naming the file; the
file is left in place for inspection. An old JSON store (state.json) is imported once when no
database exists, and renamed to state.json.imported.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from vswitchd.flows.model import Rule
from vswitchd.flows.table import FlowTable
from vswitchd.flows.views import StoreRows
from vswitchd.model import (
    Bridge,
    Port,
    PortFacts,
    PortSpec,
    StaticFdb,
    bridge_row,
    port_from_row,
    port_row,
)

log = logging.getLogger(__name__)

FORMAT_VERSION = 2          # 1 was the JSON document
DB_NAME = "state.db"
JSON_NAME = "state.json"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bridges (
    name TEXT PRIMARY KEY, spec TEXT NOT NULL, next_flow_id INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS ports (
    bridge TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, PRIMARY KEY (bridge, name));
CREATE TABLE IF NOT EXISTS fdb (
    bridge TEXT NOT NULL, mac TEXT NOT NULL, vlan INTEGER NOT NULL, port TEXT NOT NULL,
    seq INTEGER NOT NULL, remote TEXT NOT NULL DEFAULT '', revision INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bridge, mac, vlan));
CREATE TABLE IF NOT EXISTS flows (
    bridge TEXT NOT NULL, rule_id INTEGER NOT NULL, rule TEXT NOT NULL,
    PRIMARY KEY (bridge, rule_id));
"""


# Columns added after a table was first made (a store written before has the table without
# them): table -> [(column, its definition)].
_ADDED_COLUMNS = {"fdb": [("remote", "TEXT NOT NULL DEFAULT ''"),
                          ("revision", "INTEGER NOT NULL DEFAULT 0")]}


def _add_columns(db: sqlite3.Connection) -> None:
    for table, columns in _ADDED_COLUMNS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, definition in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {definition}")


class StateError(Exception):
    """The store exists but cannot be used."""


class _PortTexts:
    """Each port's row text, encoded again only when its spec or its facts object changed (both
    are replaced on every change, never changed in place): every save writes the rows that
    differ, and encoding a thousand ports took longer than the rest of an add-port."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[PortSpec, PortFacts, str]] = {}
        # per bridge: its ports' (spec, facts) objects when its rows were last made, and those
        self._bridges: dict[str, tuple[list[tuple[PortSpec, PortFacts]], dict]] = {}

    def bridge_rows(self, b: Bridge) -> dict[tuple[str, str], tuple[str]]:
        """The port rows of bridge B: the same dict object as last time when none of its ports
        changed (a save then skips the bridge: no pass over a thousand ports per change)."""
        objects = [(p.spec, p.facts) for p in b.ports.values()]
        cached = self._bridges.get(b.name)
        if cached is not None and cached[0] == objects:  # identity first, element by element
            return cached[1]
        rows = {(b.name, p.name): (self.text(b.name, p),) for p in b.ports.values()}
        self._bridges[b.name] = (objects, rows)
        return rows

    def text(self, bridge: str, port: Port) -> str:
        key = (bridge, port.name)
        known = self._known.get(key)
        if known is not None and known[0] is port.spec and known[1] is port.facts:
            return known[2]
        text = json.dumps(port_row(port), sort_keys=True)
        self._known[key] = (port.spec, port.facts, text)
        return text

    def keep(self, ports: dict[str, dict[tuple[str, str], tuple[str]]]) -> None:
        """Forget the bridges and ports not in PORTS (rows by bridge: deleted ones)."""
        if len(self._bridges) > len(ports):
            self._bridges = {b: self._bridges[b] for b in ports if b in self._bridges}
        if len(self._known) > sum(len(rows) for rows in ports.values()):
            self._known = {k: self._known[k] for rows in ports.values() for k in rows
                           if k in self._known}


class _StoredTexts(_PortTexts):
    """The row texts of ports just read from the database, as they are stored there."""

    def __init__(self, stored: dict[tuple[str, str], str]) -> None:
        super().__init__()
        self._stored = stored

    def text(self, bridge: str, port: Port) -> str:
        return self._stored[(bridge, port.name)]


def _rows(bridges: dict[str, Bridge], texts: _PortTexts | None = None) -> dict[str, dict]:
    """The database rows of BRIDGES, keyed for diffing: table -> {key: value}, except ports:
    bridge -> {key: value} (_PortTexts.bridge_rows), and flows: bridge -> {rule_id: rule
    text}, the flow table's own snapshot (FlowTable.store_rows), so that a save looks only at
    the bridges whose ports changed and the rules that changed since the last save."""
    texts = texts or _PortTexts()
    out: dict[str, dict] = {"bridges": {}, "ports": {}, "fdb": {}, "flows": {}}
    for b in bridges.values():
        out["bridges"][(b.name,)] = (json.dumps(bridge_row(b.spec, b.facts), sort_keys=True),
                                     b.flows.next_id)
        out["ports"][b.name] = texts.bridge_rows(b)
        for seq, f in enumerate(b.fdb):
            out["fdb"][(b.name, f.mac, f.vlan)] = (f.port, seq, f.remote, f.revision)
        out["flows"][b.name] = b.flows.store_rows()
    return out


def _port_changes(new: dict[str, dict], old: dict[str, dict]
                  ) -> tuple[list[tuple], list[tuple]]:
    """(port row keys to delete, port rows to write) to go from OLD to NEW (rows by bridge:
    a bridge whose rows are the same object is skipped)."""
    gone: list[tuple] = []
    changed: list[tuple] = []
    for bridge in old.keys() | new.keys():
        n, o = new.get(bridge, {}), old.get(bridge, {})
        if n is o:
            continue
        gone.extend(k for k in o if k not in n)
        changed.extend(k + v for k, v in n.items() if o.get(k) != v)
    return gone, changed


def _flow_changes(new: dict[str, dict[int, str]], old: dict[str, dict[int, str]]
                  ) -> tuple[list[tuple[str, int]], list[tuple[str, int, str]]]:
    """(flow rows to delete, flow rows to write) to go from OLD to NEW."""
    gone: list[tuple[str, int]] = []
    changed: list[tuple[str, int, str]] = []
    for bridge in old.keys() | new.keys():
        n, o = new.get(bridge, {}), old.get(bridge, {})
        if n is o:
            continue
        if isinstance(n, StoreRows) and n.base is o:  # only the rows the table changed
            for rid in n.changed:
                text = n.get(rid)
                if text is None:
                    if rid in o:
                        gone.append((bridge, rid))
                elif o.get(rid) != text:
                    changed.append((bridge, rid, text))
            continue
        gone.extend((bridge, rid) for rid in o.keys() - n.keys())
        changed.extend((bridge, rid, text) for rid, text in n.items() if o.get(rid) != text)
    return gone, changed


_KEYS = {"bridges": ("name",), "ports": ("bridge", "name"), "fdb": ("bridge", "mac", "vlan"),
         "flows": ("bridge", "rule_id")}
_VALUES = {"bridges": ("spec", "next_flow_id"), "ports": ("spec",),
           "fdb": ("port", "seq", "remote", "revision"), "flows": ("rule",)}


class StateStore:
    def __init__(self, state_dir: str) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / DB_NAME
        self.json_path = self.dir / JSON_NAME
        self._db: sqlite3.Connection | None = None
        self._rows: dict[str, dict] | None = None  # what the database holds, for diffs
        self._port_texts = _PortTexts()
        self._lock = threading.Lock()

    # ---- opening ---------------------------------------------------------------------------

    def _damaged(self, why: object) -> StateError:
        return StateError(
            f"state store {self.path} is damaged ({why}); it was left in place for "
            "inspection: move it away (with its -wal file) to start with an empty state"
        )

    def _create(self) -> None:
        """A new, empty store: made under a temporary name with mode 0600 (whatever the
        directory's mode and the umask; SQLite gives its -wal and -shm files the database's
        mode) and renamed into place, in a directory made 0700 when it does not exist."""
        tmp = self.dir / f".{DB_NAME}.new"
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                os.fchmod(fd, 0o600)
            finally:
                os.close(fd)
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                db.executescript(_SCHEMA)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)",
                           (str(FORMAT_VERSION),))
            finally:
                db.close()
            os.replace(tmp, self.path)
        except (OSError, sqlite3.Error) as exc:
            why = exc.strerror if isinstance(exc, OSError) else exc
            raise StateError(f"cannot create state store {self.path}: {why}") from None

    def _check_mode(self) -> None:
        """A warning when other users may read the store (it is left as it is)."""
        mode = self.path.stat().st_mode & 0o777
        if mode & 0o044:
            log.warning("state store %s is readable by other users (mode %04o): it holds the "
                        "whole configuration; chmod 600 it (and its -wal and -shm files)",
                        self.path, mode)

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if not self.path.exists():
            self._create()
        elif not os.access(self.path, os.R_OK | os.W_OK):
            raise StateError(f"cannot open state store {self.path}: permission denied")
        else:
            self._check_mode()
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                 timeout=10)
        except sqlite3.Error as exc:
            raise StateError(f"cannot open state store {self.path}: {exc}") from None
        try:
            # Read before anything writes: a file that is not ours fails here, untouched.
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            check = db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise self._damaged("; ".join(str(r[0]) for r in check[:3]))
            tables = {r[0] for r in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" not in tables:
                raise self._damaged("not a vswitchd store: no meta table")
            row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None or row[0] != str(FORMAT_VERSION):
                raise self._damaged(
                    f"unsupported format version {row[0] if row else None!r}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # a save writes a few rows: sqlite's default 2 MiB page cache would mostly hold
            # the whole store in the daemon's memory
            db.execute("PRAGMA cache_size=-256")
            db.executescript(_SCHEMA)
            _add_columns(db)
        except StateError:
            db.close()
            raise
        except sqlite3.DatabaseError as exc:
            db.close()
            raise self._damaged(exc) from None
        self._db = db
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---- load ------------------------------------------------------------------------------

    def load(self) -> dict[str, Bridge]:
        """Bridges by name; empty when no store exists yet (after importing an old JSON)."""
        with self._lock:
            fresh = not self.path.exists()
            legacy = self._read_json() if fresh and self.json_path.exists() else None
            db = self._connect()
            if legacy is not None:
                self._write(db, _rows(legacy), {"bridges": {}, "ports": {}, "fdb": {},
                                                "flows": {}}, {})
                os.replace(self.json_path, self.json_path.with_suffix(".json.imported"))
                log.warning("imported the old state store %s into %s (%d bridges); the old file "
                            "is kept as %s", self.json_path, self.path, len(legacy),
                            self.json_path.with_suffix(".json.imported"))
            try:
                bridges, self._rows = self._read_rows(db)
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                raise self._damaged(f"bad row: {exc}") from None
            return bridges

    def _read_rows(self, db: sqlite3.Connection) -> tuple[dict[str, Bridge], dict[str, dict]]:
        """The bridges the database holds, and its rows (_rows) with the ports' texts as stored
        (not encoded again)."""
        texts: dict[tuple[str, str], str] = {}
        bridges = self._read(db, texts)
        return bridges, _rows(bridges, _StoredTexts(texts))

    def _read(self, db: sqlite3.Connection,
              texts: dict[tuple[str, str], str] | None = None) -> dict[str, Bridge]:
        """The bridges the database holds; TEXTS, if given, gets each port's row text as it
        is stored (the rows a save compares with: not encoded again)."""
        now_wall, now_ns = time.time(), time.monotonic_ns()
        bridges: dict[str, Bridge] = {}
        for name, spec, next_id in db.execute(
                "SELECT name, spec, next_flow_id FROM bridges ORDER BY rowid"):
            data = json.loads(spec)
            data.update(name=name, ports=[], fdb=[])
            br = Bridge.from_dict(data)
            br.flows = FlowTable([], next_id=int(next_id))
            bridges[name] = br
        for bridge, _name, spec in db.execute(
                "SELECT bridge, name, spec FROM ports ORDER BY rowid"):
            p = port_from_row(json.loads(spec))
            bridges[bridge].ports[p.name] = p
            if texts is not None:
                texts[(bridge, p.name)] = spec
        for bridge, mac, vlan, port, remote, revision in db.execute(
                "SELECT bridge, mac, vlan, port, remote, revision FROM fdb "
                "ORDER BY bridge, seq"):
            bridges[bridge].fdb.append(StaticFdb(mac, port, int(vlan), remote, int(revision)))
        rules: dict[str, list[Rule]] = {}
        for bridge, text in db.execute("SELECT bridge, rule FROM flows ORDER BY bridge, rule_id"):
            if bridge not in bridges:
                raise KeyError(f"flow of unknown bridge {bridge!r}")
            rules.setdefault(bridge, []).append(Rule.from_store(text, now_wall, now_ns))
        for bridge, rs in rules.items():
            br = bridges[bridge]
            br.flows = FlowTable(rs, next_id=br.flows.next_id)
        return bridges

    def _read_json(self) -> dict[str, Bridge]:
        try:
            data = json.loads(self.json_path.read_text(encoding="utf-8"))
            if data.get("version") != 1:
                raise ValueError(f"unsupported format version {data.get('version')!r}")
            return {b["name"]: Bridge.from_dict(b) for b in data["bridges"]}
        except OSError as exc:
            raise StateError(f"cannot read old state store {self.json_path}: "
                             f"{exc.strerror}") from None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"old state store {self.json_path} is damaged ({exc}); it was left in place "
                "for inspection: move it away to start with an empty state") from None

    # ---- save ------------------------------------------------------------------------------

    def save(self, bridges: dict[str, Bridge], meta: dict[str, str] | None = None) -> None:
        """Make the database hold BRIDGES and the META values, in one transaction (only changed
        rows are written). Raises OSError when it cannot (the database is unchanged then)."""
        with self._lock:
            new = _rows(bridges, self._port_texts)
            self._port_texts.keep(new["ports"])
            try:
                db = self._connect()
                if self._rows is None:
                    self._rows = self._read_rows(db)[1]
                self._write(db, new, self._rows, meta or {})
            except StateError as exc:
                raise OSError(errno.EIO, str(exc)) from None
            except sqlite3.Error as exc:
                self._rows = None  # re-read what is really there next time
                code = errno.ENOSPC if "full" in str(exc) else errno.EIO
                raise OSError(code, f"{exc}") from None
            self._rows = new

    # ---- small named values (e.g. the applied configuration) -------------------------------

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            try:
                row = self._connect().execute("SELECT value FROM meta WHERE key=?",
                                              (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                raise self._damaged(exc) from None
            return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        if key == "version":
            raise ValueError("the format version is not a setting")
        with self._lock:
            try:
                self._connect().execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            except sqlite3.Error as exc:
                raise OSError(errno.EIO, str(exc)) from None

    @staticmethod
    def _write(db: sqlite3.Connection, new: dict[str, dict], old: dict[str, dict],
               meta: dict[str, str]) -> None:
        nested = {"flows": _flow_changes(new["flows"], old["flows"]),
                  "ports": _port_changes(new["ports"], old["ports"])}
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("flows", "fdb", "ports", "bridges"):  # children first
                keys = _KEYS[table]
                where = " AND ".join(f"{k}=?" for k in keys)
                if table in nested:
                    gone = nested[table][0]
                else:
                    gone = [k for k in old[table] if k not in new[table]]
                if gone:
                    db.executemany(f"DELETE FROM {table} WHERE {where}", gone)
            for table in ("bridges", "ports", "fdb", "flows"):
                cols = _KEYS[table] + _VALUES[table]
                marks = ",".join("?" * len(cols))
                if table in nested:
                    changed = nested[table][1]
                else:
                    changed = [k + v for k, v in new[table].items() if old[table].get(k) != v]
                if changed:
                    db.executemany(
                        f"INSERT OR REPLACE INTO {table} ({','.join(cols)}) VALUES ({marks})",
                        changed)
            for key, value in meta.items():
                db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
