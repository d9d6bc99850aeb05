"""The agent's status file (JSON, replaced atomically) and its rendering for `vswcluster status`.
The table and -j come from the same dict."""

from __future__ import annotations

import json
import os
import tempfile
import time

DEFAULT_STATUS_FILE = "/run/vswcluster/status.json"


def write_status(path: str, data: dict) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".status.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_status(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def staleness(data: dict, now: float | None = None) -> str:
    """'' when fresh; else why the file cannot be taken as the agent's present state."""
    if not data.get("running", False):
        return "the agent stopped"
    age = (now if now is not None else time.time()) - float(data.get("updated", 0))
    if age > max(3.0, 10 * float(data.get("interval", 0.3))):
        return f"not updated for {age:.0f} s: is vswcluster running (pid {data.get('pid')})?"
    return ""


def _yes(b: bool) -> str:
    return "yes" if b else "no"


def render(data: dict, now: float | None = None) -> str:
    etcd, sw = data.get("etcd", {}), data.get("vswitchd", {})
    out = [f"host {data.get('host', '?')}  vtep {data.get('vtep') or '-'}"]
    stale = staleness(data, now)
    if stale:
        out.append(f"STALE: {stale}")
    out.append(f"etcd      {etcd.get('endpoint', '-')}  connected {_yes(etcd.get('connected'))}"
               f"  lease {etcd.get('lease') or '-'} (ttl {etcd.get('ttl')} s)"
               f"  revision {etcd.get('revision', 0)}  failovers {etcd.get('failovers', 0)}")
    if etcd.get("last_error"):
        out.append(f"          last error: {etcd['last_error']}"
                   f"  (retry in {etcd.get('backoff_seconds', 0)} s)")
    out.append(f"vswitchd  {sw.get('address') or '-'}  connected {_yes(sw.get('connected'))}")
    if sw.get("last_error"):
        out.append(f"          last error: {sw['last_error']}")
    if sw.get("last_refused"):
        out.append(f"          last refused: {sw['last_refused']}")
    out.append("")
    out.append("MEMBER            VTEP")
    for host, vtep in data.get("members", {}).items():
        out.append(f"{host:<17} {vtep}")
    out.append("")
    out.append("VNI       VTEPS")
    for vni, vteps in data.get("vnis", {}).items():
        out.append(f"{vni:<9} " + ", ".join(f"{h}={v}" for h, v in vteps.items()))
    out.append("")
    out.append("PROGRAMMED (tunnel ports)")
    for t in data.get("programmed", []):
        out.append(f"{t['bridge']}/{t['port']} vni {t['vni']}: remotes "
                   f"{', '.join(t['remotes']) or '-'}; {len(t['fdb'])} remote MACs")
        for e in t["fdb"]:
            out.append(f"    vlan {e['vlan']:<4} {e['mac']}  -> {e['remote']}")
    return "\n".join(out) + "\n"
