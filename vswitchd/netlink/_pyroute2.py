"""pyroute2 without its package __init__, which imports all of pyroute2 (NDB with sqlite,
IPDB, conntrack, nl80211, wireguard ...): 20 MiB of resident memory and 95 ms, for a daemon
that uses IPRoute and a few message classes (6 MiB).

install() registers the package module without running that __init__; submodules then import
as usual. The first access to any other top-level name (`from pyroute2 import NDB`, in code
that is not ours) runs the real __init__ after all, so nothing behaves differently.

It also keeps unittest out (1.5 MiB with difflib, pprint ...): pyroute2.netlink.rtnl.iprsocket
imports unittest.mock at the top for one `mock.Mock()`, the class attribute that stands for the
message queue of IPRSocket (a socket the daemon does not use). That module runs with a
stand-in for unittest.mock whose Mock() makes the real one on first use and whose other names
are the real module's; everyone else imports the real unittest as usual."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Sequence
from typing import Any

_MOCK_USER = "pyroute2.netlink.rtnl.iprsocket"


def install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # not installed: the imports that follow say so
    loader = spec.loader
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")  # `from pyroute2 import config`
        del package.__getattr__
        loader.exec_module(package)  # the whole package, as `import pyroute2` has it
        return getattr(package, name)

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["pyroute2"] = package
    sys.meta_path.insert(0, _MockLater())


class _LazyMock:
    """unittest.mock.Mock(), made on the first access to an attribute."""

    def __getattr__(self, name: str) -> Any:
        if "_real" not in self.__dict__:
            from unittest import mock

            self.__dict__["_real"] = mock.Mock()
        return getattr(self.__dict__["_real"], name)


def _mock_stand_in() -> tuple[types.ModuleType, types.ModuleType]:
    """unittest and unittest.mock as `from unittest import mock` sees them."""
    unittest = types.ModuleType("unittest")
    mock = types.ModuleType("unittest.mock")

    def __getattr__(name: str) -> Any:
        _drop_stand_in(unittest, mock)  # (if still there) the real modules from now on
        return getattr(importlib.import_module("unittest.mock"), name)

    mock.__getattr__ = __getattr__  # type: ignore[method-assign]
    mock.Mock = _LazyMock  # type: ignore[attr-defined]
    unittest.__path__ = []
    unittest.mock = mock  # type: ignore[attr-defined]
    return unittest, mock


def _drop_stand_in(unittest: types.ModuleType, mock: types.ModuleType) -> None:
    for name, stand_in in (("unittest", unittest), ("unittest.mock", mock)):
        if sys.modules.get(name) is stand_in:
            del sys.modules[name]


class _MockLater(importlib.abc.MetaPathFinder):
    """Runs _MOCK_USER with the stand-in in sys.modules (unless unittest is loaded already)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MOCK_USER:
            return None
        sys.meta_path.remove(self)  # once
        if "unittest" in sys.modules:
            return None  # the usual finders
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            unittest, mock = _mock_stand_in()
            sys.modules.update({"unittest": unittest, "unittest.mock": mock})
            try:
                run(module)
            finally:
                _drop_stand_in(unittest, mock)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
