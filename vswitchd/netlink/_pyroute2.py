"""pyroute2 without its package __init__, which imports all of pyroute2 (NDB with sqlite,
IPDB, conntrack, nl80211, wireguard ...): 20 MiB of resident memory and 95 ms, for a daemon
that uses IPRoute and a few message classes (6 MiB).

install() registers the package module without running that __init__; submodules then import
as usual. The first access to any other top-level name (`from pyroute2 import NDB`, in code
that is not ours) runs the real __init__ after all, so nothing behaves differently."""

from __future__ import annotations

import importlib
import importlib.util
import sys


def install() -> None:
    if "pyroute2" in sys.modules:
        return
    spec = importlib.util.find_spec("pyroute2")
    if spec is None or spec.loader is None:
        return  # not installed: the imports that follow say so
    package = importlib.util.module_from_spec(spec)

    def __getattr__(name: str):
        if importlib.util.find_spec(f"pyroute2.{name}") is not None:
            return importlib.import_module(f"pyroute2.{name}")  # `from pyroute2 import config`
        del package.__getattr__
        spec.loader.exec_module(package)  # the whole package, as `import pyroute2` has it
        return getattr(package, name)

    package.__getattr__ = __getattr__
    sys.modules["pyroute2"] = package
