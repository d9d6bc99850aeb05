"""Delegation to an IPAM plugin: it gets this invocation's environment and the same network
configuration on stdin (the specification's delegation; the reference bridge plugin does
likewise), and its result or error comes back."""

from __future__ import annotations

import json
import os
import subprocess

from vswcni.netconf import NetConf
from vswcni.spec import (
    DECODE_FAILURE,
    INVALID_NETWORK_CONFIG,
    IO_FAILURE,
    CniError,
    Env,
    Result,
)

TIMEOUT = 60.0


def find(plugin: str, path: tuple[str, ...]) -> str:
    if "/" in plugin or not plugin:
        raise CniError(INVALID_NETWORK_CONFIG, f"ipam.type: {plugin!r} is not a plugin name")
    for folder in path:
        candidate = os.path.join(folder, plugin)
        if os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_NETWORK_CONFIG,
                   f"ipam.type: no executable {plugin!r} in CNI_PATH ({':'.join(path)})")


def delegate(command: str, conf: NetConf, env: Env, environ: dict[str, str]) -> Result | None:
    """Run the IPAM plugin for COMMAND; ADD returns its result. Its error is raised as is
    (code, msg and details), so the runtime sees what IPAM said."""
    exe = find(str(conf.ipam.get("type")), env.path)
    child_env = {**environ, "CNI_COMMAND": command}
    try:
        done = subprocess.run([exe], input=conf.raw, env=child_env, capture_output=True,
                              timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CniError(IO_FAILURE, f"IPAM plugin {exe}: {exc}") from None
    out = done.stdout.strip()
    if done.returncode != 0:
        try:
            err = json.loads(out)
            raise CniError(int(err.get("code", IO_FAILURE)),
                           f"IPAM plugin {conf.ipam['type']}: {err.get('msg', '')}",
                           str(err.get("details", "")))
        except (ValueError, AttributeError, TypeError):
            text = (out or done.stderr).decode(errors="replace").strip()[:500]
            raise CniError(IO_FAILURE, f"IPAM plugin {exe} failed (exit {done.returncode})",
                           text) from None
    if command != "ADD":
        return None
    try:
        data = json.loads(out)
    except ValueError:
        raise CniError(DECODE_FAILURE, f"IPAM plugin {exe}: its result is not JSON") from None
    return Result.parse(data, f"IPAM plugin {conf.ipam['type']}'s result")
