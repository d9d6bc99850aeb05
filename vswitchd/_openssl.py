"""The standard library without OpenSSL's libcrypto, which costs the daemon 3.4 MiB of resident
memory once loaded (issue 16) and which it never needs: its TLS is gRPC's own (BoringSSL,
built into cygrpc) and its only hash, SHA-256 (vswitchd.datapath.objfile), is one of
hashlib's built-in implementations.

Three standard modules would load it at import time without using it:
- asyncio (imported by pyroute2 and gRPC) imports ssl in case a loop is asked for TLS; without
  ssl it works the same, only TLS transports are refused. The daemon runs no TLS over asyncio
  (pyroute2's loops carry netlink).
- hashlib takes its hashes from OpenSSL when _hashlib imports, else from its built-in modules
  (_sha256 ...): the same digests. hmac (secrets imports it) likewise.
- pyroute2's probe_msg imports ssl at the top for its TLS probe (RTM_NEWPROBE kind "ssl"),
  which the daemon never sends: ssl becomes a stand-in that imports the real module on its
  first use, so `import ssl` anywhere later still gets the whole module.

install() imports those first, with ssl and _hashlib hidden; it does nothing when one of them
is already loaded (then OpenSSL is there anyway, or something asked for it first)."""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types

_HIDDEN = ("ssl", "_hashlib")
_LEAN = ("asyncio", "hashlib", "hmac")


def install() -> None:
    if any(name in sys.modules for name in (*_HIDDEN, *_LEAN)):
        return
    for name in _HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # `import` raises ImportError
    try:
        for name in _LEAN:
            importlib.import_module(name)
    finally:
        for name in _HIDDEN:
            del sys.modules[name]
    spec = importlib.util.find_spec("ssl")
    if spec is not None:
        sys.modules["ssl"] = _lazy_ssl(spec)


def _lazy_ssl(spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
    """A stand-in for ssl that imports the real module on the first access to any of its names
    and from then on is it (its names copied in). Not importlib.util.LazyLoader: the import
    system reads a module's __spec__ on every `import`, which would load it at once."""
    stub = types.ModuleType("ssl", "ssl, imported on first use (vswitchd._openssl)")
    stub.__spec__ = spec

    def __getattr__(name: str) -> object:
        if sys.modules.get("ssl") is stub:
            del sys.modules["ssl"]
        real = importlib.import_module("ssl")
        stub.__dict__.pop("__getattr__", None)
        stub.__dict__.update(real.__dict__)
        return getattr(real, name)

    stub.__getattr__ = __getattr__  # type: ignore[method-assign]
    return stub
