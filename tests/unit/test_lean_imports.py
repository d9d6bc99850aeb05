"""What the daemon's imports leave out (issue 16: its resident memory), checked in a fresh
interpreter: the modules a running daemon imports, then what must not be loaded, and that
what was left out still works when something asks for it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# what vswitchd.main.run() imports before the daemon is ready
DAEMON = ("vswitchd.main", "vswitchd.api.server", "vswitchd.switch", "vswitchd.monitor",
          "vswitchd.netlink.links", "vswitchd.datapath")


def run_fresh(code: str) -> str:
    prelude = "".join(f"import {name}\n" for name in DAEMON)
    res = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_no_openssl_in_the_daemon() -> None:
    out = run_fresh("""
        import sys
        maps = open("/proc/self/maps").read()
        print("libcrypto" in maps, "libssl" in maps,
              sorted(m for m in ("_ssl", "_hashlib") if m in sys.modules))
    """)
    assert out.split("\n")[0] == "False False []"


def test_no_unittest_in_the_daemon_and_pyroute2s_mock_still_works() -> None:
    out = run_fresh("""
        import sys
        print(sorted(m for m in sys.modules if m.split(".")[0] == "unittest"))
        from pyroute2.netlink.rtnl.iprsocket import IPRSocket, NotLocal
        queue = NotLocal.msg_queue  # the Mock pyroute2 made at import, made on first use
        queue.ensure_tag(7)
        print(type(queue._real).__name__, queue.ensure_tag.call_args.args)
        from unittest import mock  # the real module, for everyone else
        print(mock.Mock.__module__, type(sys.modules["unittest"].TestCase).__name__)
        from pyroute2.netlink import NLM_F_DUMP, NLM_F_REQUEST
        from pyroute2.netlink.rtnl import RTM_GETLINK
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        with IPRSocket() as sock:  # the socket that uses it: a link dump
            sock.put(ifinfmsg(), msg_type=RTM_GETLINK, msg_flags=NLM_F_REQUEST | NLM_F_DUMP)
            print(any(link.get("ifname") == "lo" for link in sock.get()))
    """)
    assert out.split("\n")[:4] == ["[]", "Mock (7,)", "unittest.mock type", "True"]


def test_no_yaml_without_a_configuration_file() -> None:
    out = run_fresh("""
        import sys
        from vswitchd import config
        from vswitchd.main import _parser, load_config
        load_config(_parser().parse_args(["--socket", "/run/x.sock"]))
        print("yaml" in sys.modules)
        config.parse("log_level: debug\\n")
        print("yaml" in sys.modules)
    """)
    assert out.split("\n")[:2] == ["False", "True"]


def test_what_was_left_out_works_when_asked_for() -> None:
    out = run_fresh("""
        import hashlib
        import hmac
        import secrets
        print(hashlib.sha256(b"vswitchd").hexdigest())
        print(hmac.new(b"k", b"m", "sha256").hexdigest())
        print(secrets.randbits(8) < 256)
        import ssl  # the stand-in pyroute2 imported: the real module on first use
        import asyncio.sslproto
        context = ssl.create_default_context()
        print(type(context).__name__, ssl.CERT_REQUIRED == context.verify_mode,
              "libcrypto" in open("/proc/self/maps").read())
        import sys
        import pyroute2.netlink.rtnl.probe_msg as probe
        print(probe.ssl.SSLContext is sys.modules["ssl"].SSLContext)
    """)
    import hashlib
    import hmac

    assert out.split("\n")[:5] == [
        hashlib.sha256(b"vswitchd").hexdigest(),
        hmac.new(b"k", b"m", "sha256").hexdigest(),
        "True",
        "SSLContext True True",
        "True",
    ]
