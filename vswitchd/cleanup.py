"""`vswctl shutdown --cleanup` and `vswitchd --cleanup`: remove everything vswitchd created.

What goes: the programs it attached (its pinned TCX and XDP links, and on every port in its pinned
port table its own cls_bpf filter priority/handle only), its pinned maps and their directory, the
bridges and the veth/TAP ports of the desired state, the named namespaces it created itself, the
system ports' enslavement, and its NAT rules (the nftables table goes with its last rule). What
stays: every interface, namespace, program or nftables table it did not create, and the
desired-state store (like Open vSwitch's database: the next start re-creates the switch; delete the
state directory to forget it).
"""

from __future__ import annotations

import logging

from vswitchd.errors import SwitchError
from vswitchd.model import Bridge
from vswitchd.netlink import netns
from vswitchd.ports import driver

log = logging.getLogger(__name__)


def _step(what: str, fn, *args) -> bool:
    try:
        fn(*args)
        return True
    except (SwitchError, OSError) as exc:
        log.warning("cleanup: %s failed: %s", what, exc)
        return False


def remove_pins(bpffs_dir: str) -> None:
    """Unlink the datapath's pins (only the names it creates; its TCX and XDP link pins,
    which detaches their programs) and its directory if then empty."""
    from vswitchd.datapath import tcx, xdp
    from vswitchd.datapath.pins import remove_map_pins

    tcx.remove_all(bpffs_dir)
    xdp.remove_all(bpffs_dir)
    remove_map_pins(bpffs_dir)


def remove_nat(bridges: dict[str, Bridge]) -> int:
    """Remove vswitchd's masquerade rules (all of them: every rule in its own table is its);
    the table goes with the last one. Returns how many."""
    try:
        from vswitchd.netlink.nat import Nat

        nat = Nat()
    except SwitchError as exc:
        log.info("cleanup: NAT not checked: %s", exc)
        return 0
    removed = 0
    for bridge in sorted(set(nat.rules()) | set(bridges)):
        try:
            removed += nat.remove(bridge)
        except SwitchError as exc:
            log.warning("cleanup: NAT rule of %s not removed: %s", bridge, exc)
    return removed


def teardown(bridges: dict[str, Bridge], links, datapath, bpffs_dir: str) -> dict[str, int]:
    """Remove the kernel side of BRIDGES and the datapath; the desired state is not changed.
    Best effort: every step is tried and failures are logged. Returns counts for the log."""
    counts = {"bridges": 0, "ports": 0, "namespaces": 0, "nat_rules": 0}
    # Programs first (while their devices still exist), then the pins.
    if datapath is not None:
        _step("detaching programs and removing pins", datapath.destroy)
    remove_pins(bpffs_dir)
    for br in bridges.values():
        for port in br.ports.values():
            if not driver(port.type).makes_link:
                if links.get(port.name) is not None:
                    _step(f"releasing {port.name}", links.release, port.name)
                    _detach_ours(links, port.name)
                continue
            if _step(f"deleting {port.name}", links.delete, port.name):
                counts["ports"] += 1
        info = links.get(br.name)
        if info is not None and info.kind == "bridge":
            _detach_ours(links, br.name)
            if _step(f"deleting bridge {br.name}", links.delete, br.name):
                counts["bridges"] += 1
        created = {p.spec.netns for p in br.ports.values() if p.facts.netns_created}
        for ref in sorted(created):
            if netns.is_named(ref) and netns.exists(ref):
                if _step(f"removing namespace {ref}", netns.remove_named, ref):
                    counts["namespaces"] += 1
    counts["nat_rules"] = remove_nat(bridges)
    return counts


def _detach_ours(links, name: str) -> None:
    """Remove vswitchd's filters from a device it keeps (system port): only the filter at
    vswitchd's priority/handle that runs one of its programs."""
    from vswitchd.netlink import tc

    info = links.get(name)
    if info is None:
        return
    hooks: tuple[tuple[tc.Direction, str], ...] = (("ingress", "tc_ingress"),
                                                    ("egress", "tc_egress"))
    for direction, prog in hooks:
        try:
            if prog in tc.attached(info.ifindex, direction):
                tc.detach(info.ifindex, direction)
        except SwitchError as exc:
            log.warning("cleanup: filter at %s of %s not removed: %s", direction, name, exc)
