"""TC clsact + cls_bpf attachment (vswitchd.netlink.tc) on veths in the test's private netns."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from pyroute2 import IPRoute

from vswitchd.errors import NotFound
from vswitchd.netlink import tc

pytestmark = pytest.mark.root

PROG = """
int pass(struct __sk_buff *skb) { return 0; }
int other(struct __sk_buff *skb) { return 0; }
"""


@pytest.fixture(scope="module")
def progs():
    from bcc import BPF

    b = BPF(text=PROG.encode())
    try:
        yield {name: b.load_func(name.encode(), BPF.SCHED_CLS) for name in ("pass", "other")}
    finally:
        b.cleanup()


@pytest.fixture
def veth(ipr: IPRoute) -> Iterator[int]:
    name = f"tc{secrets.token_hex(3)}"
    ipr.link("add", ifname=name, kind="veth", peer=f"{name}x")
    idx = ipr.link_lookup(ifname=name)[0]
    try:
        yield idx
    finally:
        ipr.link("del", index=idx)


def clsacts(ipr: IPRoute, idx: int) -> int:
    return sum(q.get_attr("TCA_KIND") == "clsact" for q in ipr.get_qdiscs(index=idx))


def test_attach_adds_clsact_once_and_replaces(ipr, veth, progs):
    tc.attach(veth, progs["pass"].fd, "pass", "ingress")
    tc.attach(veth, progs["pass"].fd, "pass", "egress")  # the clsact is there: EEXIST is fine
    assert clsacts(ipr, veth) == 1
    assert tc.attached(veth, "ingress") == ["pass"] and tc.attached(veth, "egress") == ["pass"]
    tc.attach(veth, progs["other"].fd, "other", "ingress")  # replace: still one filter
    assert tc.attached(veth, "ingress") == ["other"]


def test_foreign_clsact_and_filters_are_kept(ipr, veth, progs):
    ipr.tc("add", "clsact", index=veth)
    ipr.tc("add-filter", "bpf", index=veth, handle=7, parent=0xFFFFFFF2, prio=7,
           fd=progs["other"].fd, name="other", direct_action=True)
    tc.attach(veth, progs["pass"].fd, "pass", "ingress")
    assert sorted(tc.attached(veth, "ingress")) == ["other", "pass"]
    assert tc.detach(veth, "ingress") is True
    assert tc.attached(veth, "ingress") == ["other"]
    assert tc.detach(veth, "ingress") is False
    assert clsacts(ipr, veth) == 1


def test_missing_device_is_not_found(progs):
    with pytest.raises(NotFound):
        tc.attach(999_999, progs["pass"].fd, "pass", "ingress")
    with pytest.raises(NotFound):
        tc.detach(999_999, "ingress")
