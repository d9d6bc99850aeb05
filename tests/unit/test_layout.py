"""The daemon's layout: no import circles among its modules, and a port type is one driver
module plus one registration line."""

from __future__ import annotations

import ast
from dataclasses import replace
from pathlib import Path

import pytest
from fakes import make_rig

from vswitchd import ports
from vswitchd.datapath import PortKind
from vswitchd.errors import AlreadyExists, InvalidArgument
from vswitchd.model import BridgeSpec, PortSpec
from vswitchd.ports.base import PortDriver

ROOT = Path(__file__).resolve().parents[2]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph(package: str = "vswitchd") -> dict[str, set[str]]:
    """Module -> the package's modules it imports (at any level, also inside functions;
    imports only for the type checker excluded)."""
    files = {_module_name(p): p for p in (ROOT / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        skip = {id(n) for t in ast.walk(tree) if _type_checking(t) for n in ast.walk(t)}
        edges: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import mod` imports the module; `from mod import name`, the module
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in files
                           else node.module for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One import circle per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_the_daemon_has_no_import_circles():
    graph = import_graph()
    assert "vswitchd.switch" in graph and graph["vswitchd.config"]  # the graph is real
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


class DummyDriver(PortDriver):
    """A made-up port type: a dummy interface vswitchd creates, with an MTU."""

    type = "dummy"
    accepts = frozenset({"mtu"})

    def create(self, env, br, port, existing, txn):  # noqa: ANN001, ANN201
        if existing is not None:
            raise AlreadyExists(f"interface {port.name} already exists")
        txn.step(f"create dummy {port.name}",
                 lambda: env.links.add_system(port.name, kind="dummy"),
                 lambda: env.links.delete(port.name))
        return port

    def destroy(self, env, br, port):  # noqa: ANN001, ANN201
        env.links.delete(port.name)


def test_a_port_type_is_one_driver_and_one_registration(monkeypatch, tmp_path):
    """Everything the switch does with ports works for a new type once its driver is
    registered: validation of the fields it takes, create, attach, view, rollback, delete."""
    monkeypatch.setitem(ports.DRIVERS, "dummy", DummyDriver())
    monkeypatch.setattr(ports, "PORT_TYPES", (*ports.PORT_TYPES, "dummy"))
    rig = make_rig(monkeypatch, str(tmp_path))
    sw = rig.switch
    sw.create_bridge(BridgeSpec("br0"))
    with pytest.raises(InvalidArgument, match="applies only to veth, tap, vxlan and dummy ports"):
        sw.create_port("br0", PortSpec("p0", "system", mtu=1400))
    with pytest.raises(InvalidArgument, match="applies only to veth ports"):
        sw.create_port("br0", PortSpec("d0", "dummy", netns="x"))
    view = sw.create_port("br0", PortSpec("d0", "dummy", mtu=1400, vlan=10))
    info = rig.links.get("d0")
    assert (view.spec.type, view.spec.mtu, view.ifindex, info.master) == (
        "dummy", 1400, info.ifindex, rig.links.get("br0").ifindex)
    assert rig.dp.ports[info.ifindex][1] == PortKind.DEVICE
    assert rig.stored()["br0"]["ports"][0]["type"] == "dummy"
    rig.dp.fail_once("add_port", OSError("boom"))
    with pytest.raises(OSError):
        sw.create_port("br0", PortSpec("d1", "dummy"))
    assert rig.links.get("d1") is None
    assert sw.delete_port("br0", "d0") and rig.links.get("d0") is None
    assert replace(view.spec, name="x").type == "dummy"
