"""The watch event rate limit with the real daemon: a low limit makes a watcher of fast pings
report `lost N`; the limit outlives a restart; the configuration file's value is applied at
start and on SIGHUP only when it changed (a value set with vswctl stays otherwise)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest

from tests.netns.harness import VSWCTL
from tests.netns.test_trace import started, wait_until

pytestmark = pytest.mark.root

SUBNET = "10.81.0"
PINGS = 200  # at 10 ms: 2 s, 400 ICMP decisions (requests at c1, replies at c2)


def setup(h, config: str) -> None:
    h.start("--config", config)
    h.vswctl("add-br", "br0", "--ip", f"{SUBNET}.1/24")
    for name, last in (("c1", 11), ("c2", 12)):
        h.vswctl("add-port", "br0", name, "--netns", h.name(name), "--ip",
                 f"{SUBNET}.{last}/24")
    assert h.ping(h.name("c1"), f"{SUBNET}.12")  # both MACs learned


def rate(h) -> int:
    return h.json("status")["watch_rate_limit"]


def watch_fast_pings(h) -> tuple[int, int]:
    """(events, lost) of an ICMP watcher while c1 pings c2 PINGS times at 10 ms intervals."""
    n = started(h)
    proc = subprocess.Popen([VSWCTL, "--socket", h.socket, "-j", "watch", "br0", "--match",
                             "icmp"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    h._helpers.append(proc)  # killed by cleanup if the test fails
    wait_until(lambda: started(h) > n or proc.poll() is not None, what="the watcher")
    items: list[dict] = []
    # read as it prints: 400 lines fill a pipe, and a blocked client would stop reading events
    reader = threading.Thread(target=lambda: items.extend(json.loads(x) for x in proc.stdout),
                              daemon=True)
    reader.start()
    res = h.run_in(h.name("c1"), "ping", "-q", "-c", str(PINGS), "-i", "0.01", "-W", "2",
                   f"{SUBNET}.12")
    assert res.returncode == 0, res.stdout + res.stderr
    time.sleep(1.5)  # the daemon reads the lost counters every 0.5 s: let the last notice out
    proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean exit
    assert proc.wait(15) == 0, proc.stderr.read()
    reader.join(15)
    lost = sum(i["lost"] for i in items if "lost" in i)
    return len(items) - sum(1 for i in items if "lost" in i), lost


def test_rate_limit_loses_events_and_outlives_a_restart(host, tmp_path):
    h = host
    cfg = tmp_path / "vswitchd.yaml"
    cfg.write_text("watch:\n  rate_limit: 10000\n")
    setup(h, str(cfg))
    assert rate(h) == 10000
    events, lost = watch_fast_pings(h)
    assert (events, lost) == (2 * PINGS, 0)  # the default limit is far above 200 events/s

    # a low limit: at most 5 events per second per CPU (bursts of 5) reach the watcher
    assert h.vswctl("set-watch-rate", "5").stdout == ""
    assert rate(h) == 5
    assert "watch rate limit: 5 events/s per CPU" in h.vswctl("status").stdout
    events, lost = watch_fast_pings(h)
    assert lost > 0 and events < 100, (events, lost)
    assert events + lost >= 2 * PINGS - 10, (events, lost)

    # bad values are refused, naming the value and the range; nothing changes
    res = h.vswctl("set-watch-rate", "0", check=False)
    assert res.returncode == 1 and "0 must be a whole number" in res.stderr
    assert "1..1000000000" in res.stderr and rate(h) == 5

    # a restart (same file, unchanged): the value set with vswctl is kept and applied to the
    # restarted daemon's datapath
    assert h.stop() == 0
    h.start("--config", str(cfg))
    assert rate(h) == 5
    assert h.ping(h.name("c1"), f"{SUBNET}.12")
    events, lost = watch_fast_pings(h)
    assert lost > 0 and events < 100, (events, lost)

    # the file changes: SIGHUP applies its new value
    cfg.write_text("watch:\n  rate_limit: 8\n")
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: rate(h) == 8, what="the reloaded rate limit")
    cfg.write_text("watch:\n  rate_limit: nope\n")  # a bad file: refused, nothing changes
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "configuration reload refused" in h.log(), what="the refusal")
    assert "watch.rate_limit: 'nope' must be a whole number" in h.log()
    assert rate(h) == 8
