"""Runs of the loaded programs on crafted frames (BPF_PROG_TEST_RUN, testrun.py) and the
decoding of a dry run's result (dp_result) into a RunResult: the decision and the trace report."""

from __future__ import annotations

import ctypes
import errno
import ipaddress
from dataclasses import dataclass, field

from vswitchd.datapath import testrun
from vswitchd.datapath.constants import (
    DRY_RUN_MAGIC,
    FLOOD_CHANGED,
    HANDOFF_REASONS,
    HOOKS,
    MAX_BRIDGE_PORTS,
    MAX_FLOW_ACTIONS,
    TAG_ENC_TAGGED,
    TAG_ENC_UNTAGGED,
    TRACE_STAGES,
    VERDICTS,
)
from vswitchd.datapath.drop_reasons import reason_name
from vswitchd.errors import InvalidArgument, Unavailable
from vswitchd.netlink.errors import device_error

TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = 0, 2, 7
XDP_DROP, XDP_PASS, XDP_REDIRECT = 1, 2, 4
_RETVAL_VERDICT = {
    "tc": {TC_ACT_OK: "pass", TC_ACT_SHOT: "drop", TC_ACT_REDIRECT: "redirect"},
    "xdp": {XDP_PASS: "pass", XDP_DROP: "drop", XDP_REDIRECT: "redirect"},
}
_DRY_RUN_META = b"".join(word.to_bytes(4, "little") for word in DRY_RUN_MAGIC)
_KEY_FIELDS = ("in_port", "dl_src", "dl_dst", "dl_type", "dl_vlan", "nw_proto", "ip_src",
               "ip_dst", "tp_src", "tp_dst")


@dataclass(frozen=True)
class RunResult:
    """One BPF_PROG_TEST_RUN. In a dry run every field is the program's decision. In a real run
    (dry_run=False) only retval and data (the frame as the program left it) are known: verdict
    is derived from retval ("pass", "drop", "redirect"), drop_reason is "", flood is [], fdb_hit
    False, rule_id 0.

    vlan is the frame's VLAN inside the switch (once its ingress classification passed).

    rule_id is the matched flow rule (0 = table miss, "normal"), priority its priority, outputs
    the output:PORT targets of its actions in order (clones and the final one); out_ifindex and
    flood describe "normal"/"flood" (or the final output).

    Trace report (dry runs; `vswctl trace`), empty in real runs:
    key: the parsed headers, the flow key fields by FLOW_FIELDS name, integers as in
      DpRule.fields (MACs 48-bit, IPs 128-bit with IPv4 << 96, dl_vlan the frame's VID, 0 =
      untagged); for a malformed frame what was parsed before the frame ended (the rest 0).
    stages: the stages the packet reached, in order: "port" (in_port is a port of ours),
      "parse" (headers parsed), "flow" (the flow table was looked up: rule_id/priority or a
      miss), "vlan" (ingress VLAN classification passed: vlan holds it; a vlan-mismatch drop
      stops before it), "l2" (normal switching: FDB lookup, fdb_hit, out_ifindex or flood).
    tags: per output port (outputs, out_ifindex, flood) the tag it sends the frame with:
      "as-is" (the frame's tag state unchanged), "untagged", or "tagged:VID".

    hook: the program that ran, "tc" or "xdp". At XDP the verdict "to-tc" (a dry run) says the
    XDP stage hands the frame on to the port's TC program, and handoff why; the caller runs the
    TC program to know what happens next."""

    retval: int
    verdict: str
    drop_reason: str
    out_ifindex: int
    flood: list[int]
    fdb_hit: bool
    duration_ns: int
    rule_id: int = 0
    priority: int = 0
    outputs: list[int] = field(default_factory=list)
    data: bytes = b""
    vlan: int = 0
    key: dict[str, int] = field(default_factory=dict)
    stages: tuple[str, ...] = ()
    tags: dict[int, str] = field(default_factory=dict)
    hook: str = "tc"
    handoff: str = ""
    tunnel_remote: str = ""  # forward to a tunnel port: the VTEP of the tunnel key it sets


def check_args(frame: bytes, repeat: int) -> None:
    if len(frame) < testrun.ETH_HLEN:
        raise InvalidArgument(
            "frame", f"{len(frame)} bytes",
            f"BPF_PROG_TEST_RUN needs at least {testrun.ETH_HLEN} bytes (Ethernet header)",
        )
    if repeat < 1:
        raise InvalidArgument("repeat", repeat, "must be at least 1")


def run(prog, result, frame: bytes, ifindex: int, dry_run: bool, repeat: int,
        hook: str = "tc") -> RunResult:
    """Runs prog (a program of HOOK, "tc" or "xdp") on frame as if it arrived on ifindex; in a
    dry run decodes what the program wrote to result (the dp_result map), zeroed first."""
    zero = result.Key(0)
    if dry_run:
        result[zero] = result.Leaf()  # zero on every CPU
    try:
        if hook == "xdp":
            out = testrun.prog_test_run_xdp(prog.fd, frame, ifindex=ifindex,
                                            meta=_DRY_RUN_META if dry_run else b"",
                                            repeat=repeat)
        else:
            out = testrun.prog_test_run_skb(prog.fd, frame, ifindex=ifindex,
                                            cb=DRY_RUN_MAGIC if dry_run else (), repeat=repeat)
    except OSError as exc:
        if exc.errno == errno.ENODEV:
            raise device_error(exc, ifindex, where=" in this netns") from None
        raise  # EINVAL: the kernel refuses the frame (Switch.trace tells the user why)
    if not dry_run:
        return RunResult(out.retval, _RETVAL_VERDICT[hook].get(out.retval, "other"), "", 0,
                         [], False, out.duration_ns, data=out.data, hook=hook)
    for res in result[zero]:
        if res.verdict:
            n = min(res.n_flood, MAX_BRIDGE_PORTS)
            return RunResult(
                retval=out.retval,
                verdict=VERDICTS.get(res.verdict, f"unknown-{res.verdict}"),
                drop_reason=reason_name(res.drop_reason),
                out_ifindex=res.out_ifindex,
                flood=[res.flood[i] for i in range(n)],
                fdb_hit=bool(res.fdb_hit),
                duration_ns=out.duration_ns,
                rule_id=res.rule_id,
                priority=res.priority,
                outputs=[res.outputs[i] for i in range(min(res.n_outputs, MAX_FLOW_ACTIONS))],
                data=out.data,
                vlan=res.vlan,
                key=_key_dict(res.key),
                stages=tuple(name for bit, name in sorted(TRACE_STAGES.items())
                             if res.stages & bit),
                tags=_report_tags(res, n),
                hook=HOOKS.get(res.hook, hook),
                handoff=HANDOFF_REASONS.get(res.handoff, "") if res.handoff else "",
                tunnel_remote=str(ipaddress.IPv4Address(res.tun_remote)) if res.tun_remote
                else "",
            )
    raise Unavailable("the dry run wrote no result (is the program the datapath's?)")


def _key_dict(key) -> dict[str, int]:
    """struct flow_key (ctypes) -> {field: int} in DpRule's integer form."""
    out = {}
    for name in _KEY_FIELDS:
        value = getattr(key, name)
        out[name] = int.from_bytes(bytes(value), "big") if isinstance(value, ctypes.Array) \
            else int(value)
    return out


def _tag_text(enc: int, arrived: int) -> str:
    if enc == arrived:
        return "as-is"
    if enc & TAG_ENC_TAGGED:
        return f"tagged:{enc & 0x0FFF}"
    return "untagged"


def _report_tags(res, n_flood: int) -> dict[int, str]:
    """Per output ifindex, the tag state it sends with (from the dry run's tag_enc values)."""
    tags: dict[int, str] = {}
    for i in range(min(res.n_outputs, MAX_FLOW_ACTIONS)):
        if res.output_tags[i]:
            tags[res.outputs[i]] = _tag_text(res.output_tags[i], res.in_tag)
    if res.out_ifindex and res.out_tag:
        tags[res.out_ifindex] = _tag_text(res.out_tag, res.in_tag)
    base = res.flood_base
    for i in range(n_flood):
        enc = base
        if res.flood_cls[i] == FLOOD_CHANGED:  # the one tag change: pop, or push res.vlan
            enc = TAG_ENC_UNTAGGED if base & TAG_ENC_TAGGED else TAG_ENC_TAGGED | res.vlan
        if enc:
            tags[res.flood[i]] = _tag_text(enc, res.in_tag)
    return tags
