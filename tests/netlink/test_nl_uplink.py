"""Moving the host's addresses and routes between an uplink NIC and its bridge."""

from __future__ import annotations

import subprocess

import pytest
from pyroute2 import IPRoute

from vswitchd.netlink.links import L3Config, Route

pytestmark = pytest.mark.root


def ping(addr: str) -> bool:
    return subprocess.run(["ping", "-c", "1", "-W", "2", addr],
                          capture_output=True).returncode == 0


@pytest.fixture
def cleanup_links():
    yield
    with IPRoute() as ip:
        for name in ("up0", "brup"):
            for index in ip.link_lookup(ifname=name):
                ip.link("del", index=index)


@pytest.fixture
def lan(links, make_ns, cleanup_links):
    """up0 here, its peer in a 'LAN' namespace at 10.60.0.2 routing to 10.61.0.0/24."""
    ns = make_ns()
    links.create_veth("up0", "lan0", ns, addresses=["10.60.0.2/24", "fd60::2/64"])
    subprocess.run(["ip", "netns", "exec", ns, "ip", "addr", "add", "10.61.0.1/24",
                    "dev", "lo"], check=True)
    subprocess.run(["ip", "addr", "add", "10.60.0.1/24", "dev", "up0"], check=True)
    subprocess.run(["ip", "addr", "add", "fd60::1/64", "dev", "up0", "nodad"], check=True)
    subprocess.run(["ip", "route", "add", "10.61.0.0/24", "via", "10.60.0.2", "metric", "7"],
                   check=True)
    return ns


def test_l3_config_reads_addresses_and_routes(links, lan):
    cfg = links.l3_config("up0")
    assert set(cfg.addresses) == {"10.60.0.1/24", "fd60::1/64"}
    assert Route("10.61.0.0/24", "10.60.0.2", 7) in cfg.routes
    assert all(r.gateway for r in cfg.routes if r.dst.startswith("10.60."))  # no connected


def test_move_to_bridge_and_back_keeps_connectivity(links, lan):
    cfg = links.l3_config("up0")
    links.create_bridge("brup")
    assert ping("10.61.0.1")
    links.enslave("up0", "brup")
    links.move_l3(cfg, "up0", "brup")
    assert links.l3_config("up0") == L3Config((), ())
    moved = links.l3_config("brup")
    assert set(moved.addresses) == set(cfg.addresses)
    assert Route("10.61.0.0/24", "10.60.0.2", 7) in moved.routes
    assert ping("10.61.0.1")  # through the bridge now

    links.move_l3(cfg, "brup", "up0")
    links.release("up0")
    assert set(links.l3_config("up0").addresses) == set(cfg.addresses)
    assert Route("10.61.0.0/24", "10.60.0.2", 7) in links.l3_config("up0").routes
    assert links.l3_config("brup").addresses == ()
    assert ping("10.61.0.1")


def test_failed_move_is_rolled_back(links, lan):
    cfg = links.l3_config("up0")
    bad = L3Config(cfg.addresses, (*cfg.routes, Route("10.62.0.0/24", "10.99.0.1", 0)))
    links.create_bridge("brup")
    with pytest.raises(Exception, match="10.62.0.0/24"):
        links.move_l3(bad, "up0", "brup")  # the gateway is unreachable: the kernel refuses
    assert set(links.l3_config("up0").addresses) == set(cfg.addresses)
    assert links.l3_config("brup").addresses == ()
    assert Route("10.61.0.0/24", "10.60.0.2", 7) in links.l3_config("up0").routes
    assert ping("10.61.0.1")
