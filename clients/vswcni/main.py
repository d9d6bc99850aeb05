"""The vswitchd-cni executable: the runtime sets CNI_* in the environment and writes the
network configuration on stdin; the result (ADD), the versions (VERSION) or an error goes to
stdout as JSON, and an error exits 1."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from vswcni import netconf, plugin
from vswcni.spec import (
    CURRENT_VERSION,
    INTERNAL,
    IO_FAILURE,
    SUPPORTED_VERSIONS,
    TRY_AGAIN_LATER,
    CniError,
    Env,
)

TIMEOUT = 30.0  # per call to the daemon


def run(environ: dict[str, str], stdin: bytes) -> dict[str, Any] | None:
    """One invocation: its output (None for DEL and CHECK, which print nothing on success)."""
    env = Env.read(environ)
    if env.command == "VERSION":
        asked = _version_of(stdin)
        version = asked if asked in SUPPORTED_VERSIONS else CURRENT_VERSION
        return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}
    conf = netconf.parse(stdin)
    from vswapi.controller import Switch  # only the commands that talk to the daemon load gRPC

    if not os.path.exists(conf.socket):
        raise CniError(TRY_AGAIN_LATER, f"vswitchd is not running: no socket {conf.socket}",
                       "start it (make run, or systemctl start vswitchd)")
    with Switch.connect(socket_path=conf.socket, timeout=TIMEOUT) as sw:
        if env.command == "ADD":
            return plugin.add(sw, conf, env, environ).render(conf.version)
        if env.command == "DEL":
            plugin.delete(sw, conf, env, environ)
        else:
            plugin.check(sw, conf, env, environ)
    return None


def _version_of(stdin: bytes) -> str:
    """The configuration's cniVersion, for the reply's (the current one when it has none)."""
    try:
        version = json.loads(stdin).get("cniVersion")
        return version if isinstance(version, str) and version else CURRENT_VERSION
    except (ValueError, AttributeError):
        return CURRENT_VERSION


def main() -> int:
    try:
        stdin = sys.stdin.buffer.read()
    except OSError as exc:
        err = CniError(IO_FAILURE, f"cannot read the network configuration: {exc}")
        print(json.dumps(err.result(CURRENT_VERSION)))
        return 1
    try:
        out = run(dict(os.environ), stdin)
    except CniError as exc:
        print(json.dumps(exc.result(_version_of(stdin))))
        return 1
    except Exception as exc:  # noqa: BLE001 - the runtime must get the spec's error JSON
        err = CniError(IO_FAILURE if isinstance(exc, OSError) else INTERNAL,
                       f"vswitchd-cni failed: {type(exc).__name__}: {exc}")
        print(json.dumps(err.result(_version_of(stdin))))
        return 1
    if out is not None:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
