"""`vswctl trace`: the datapath's dry-run result explained stage by stage (pure Python).

The datapath runs the real program on the frame (Datapath.trace) and reports what it decided:
the parsed key, the matched rule, the frame's VLAN, FDB hit or flood set, the verdict. This
module turns that into the ordered stages an Open vSwitch user knows from `ofproto/trace`:

    packet -> flow table -> vlan -> l2 -> verdict

Stages the packet never reached are left out (a malformed frame stops after `packet`; a rule
that drops or outputs directly skips `vlan` and `l2`).

Each output carries the tag state the datapath reported for it (RunResult.tags): the frame
leaves tagged with a VID, or untagged. Summaries name it only when VLANs are in play (a tagged
frame, a VLAN other than 0, or a tagged output), so plain switching reads as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from vswapi.vlanmode import vlan_mode_text
from vswitchd.flows.model import (
    ETH_IP,
    ETH_IPV6,
    FULL,
    PROTO_TCP,
    PROTO_UDP,
    Match,
    Rule,
    actions_str,
    mac_str,
)

# Drops decided before the flow table: the pipeline stops there.
EARLY_DROPS = ("malformed", "invalid-src-mac")
# Drops decided by the flow table's actions: no L2 stage follows.
FLOW_DROPS = ("flow-drop", "vlan-failed")


@dataclass(frozen=True)
class Headers:
    match: Match            # exact values of what the parser saw
    length: int
    truncated: bool


@dataclass(frozen=True)
class FlowTableStage:
    table_miss: bool
    priority: int = 0
    cookie: int = 0
    match: str = ""
    actions: str = ""
    n_rules: int = 0


@dataclass(frozen=True)
class VlanStage:
    port_mode: str
    tagged: bool
    frame_vid: int
    vlan: int
    accepted: bool


@dataclass(frozen=True)
class OutputTag:
    """How the frame leaves one output port, as the datapath reported it."""

    port: str
    tagged: bool | None      # None: the datapath reported no tag state for this output
    vlan: int | None = None  # the 802.1Q VID when tagged
    # a tunnel port: the tunnel key the frame gets, its VNI and remote VTEP(s) (a flood: each)
    tunnel_vni: int = 0
    tunnel_remotes: tuple[str, ...] = ()

    def text(self, vlans: bool = True) -> str:
        out = self.port
        if self.tagged is not None and vlans:
            out += f" (tagged {self.vlan})" if self.tagged else " (untagged)"
        if self.tunnel_vni:
            remotes = ", ".join(self.tunnel_remotes) or "no remote VTEP"
            out += f" [vxlan vni {self.tunnel_vni} to {remotes}]"
        return out


@dataclass(frozen=True)
class L2Stage:
    dl_dst: str
    multicast: bool
    fdb_hit: bool
    port: str = ""
    flood: tuple[str, ...] = ()
    output_tags: tuple[OutputTag, ...] = ()  # the FDB port or the flood set, with their tags


@dataclass(frozen=True)
class VerdictStage:
    verdict: str
    outputs: tuple[str, ...]
    drop_reason: str
    output_tags: tuple[OutputTag, ...] = ()  # outputs, in the same order, with their tags
    handoff: str = ""  # verdict "to-tc": why the XDP hook hands the frame on to TC


Detail = Headers | FlowTableStage | VlanStage | L2Stage | VerdictStage


@dataclass(frozen=True)
class Stage:
    name: str
    summary: str
    detail: Detail
    hook: str = "tc"  # the program that made it: "tc" or "xdp"


@dataclass(frozen=True)
class TraceReport:
    bridge: str
    stages: list[Stage] = field(default_factory=list)
    verdict: str = ""
    outputs: tuple[str, ...] = ()
    drop_reason: str = ""
    output_tags: tuple[OutputTag, ...] = ()  # outputs, in the same order, with their tags


def output_tag(port: str, tag: str | None, arrived_vid: int | None) -> OutputTag:
    """One output's tag from the datapath's report: "as-is" (the frame's own tag state, VID
    ARRIVED_VID or untagged when None), "untagged", "tagged:VID"; None or anything else: not
    reported."""
    if tag == "as-is":
        return OutputTag(port, arrived_vid is not None, arrived_vid)
    if tag == "untagged":
        return OutputTag(port, False)
    if tag and tag.startswith("tagged:") and tag[7:].isdigit():
        return OutputTag(port, True, int(tag[7:]))
    return OutputTag(port, None)


def key_match(key: Mapping[str, int], in_port: str) -> Match:
    """The parsed key (DpRule field names, ints) as a Match of exact values.

    IP fields appear only for IPv4/IPv6 frames, ports only for TCP/UDP, dl_vlan only for a
    tagged frame (VID != 0)."""
    fields: dict[str, Any] = {"in_port": in_port}
    for name in ("dl_src", "dl_dst"):
        if name in key:
            fields[name] = (key[name], FULL[name])
    dl_type = key.get("dl_type")
    if dl_type is not None:
        fields["dl_type"] = dl_type
    if key.get("dl_vlan"):
        fields["dl_vlan"] = key["dl_vlan"]
    if dl_type == ETH_IP:
        for name, dp in (("nw_src", "ip_src"), ("nw_dst", "ip_dst")):
            if dp in key:
                fields[name] = ((key[dp] >> 96) & FULL[name], FULL[name])
    elif dl_type == ETH_IPV6:
        for name, dp in (("ipv6_src", "ip_src"), ("ipv6_dst", "ip_dst")):
            if dp in key:
                fields[name] = (key[dp], FULL[name])
    if dl_type in (ETH_IP, ETH_IPV6) and "nw_proto" in key:
        fields["nw_proto"] = key["nw_proto"]
        if key["nw_proto"] in (PROTO_TCP, PROTO_UDP):
            for name in ("tp_src", "tp_dst"):
                if name in key:
                    fields[name] = (key[name], FULL[name])
    return Match(**fields)


def vlan_mode(config: Any) -> str:
    """A VlanConfig as text ("all", "access:10", "trunk:10,20/native:5"), "unknown" for None."""
    if config is None:
        return "unknown"
    return vlan_mode_text(config.access, config.trunks, config.native)


def _dedupe(items: Sequence[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(items))


def build_report(*, bridge: str, in_port: str, result: Any, names: Mapping[int, str],
                 rule: Rule | None, n_rules: int, length: int, truncated: bool,
                 port_vlan: Any = None, frame_vid: int | None = None,
                 tunnels: Mapping[int, tuple[int, tuple[str, ...]]] | None = None
                 ) -> TraceReport:
    """The stages of one dry run.

    result: the datapath's RunResult (verdict, drop_reason, out_ifindex, flood, fdb_hit,
    rule_id, priority, outputs, vlan, key, tags). names: ifindex -> port name (the bridge's ifindex
    -> the bridge's name). rule: the matched rule (None for a table miss or an unknown rule id).
    frame_vid: the VID of the frame's 802.1Q tag as sent (None: untagged). tunnels: ifindex ->
    (VNI, remote VTEPs) of the bridge's tunnel ports."""

    def name(ifindex: int) -> str:
        return names.get(ifindex, f"ifindex:{ifindex}")

    tags = dict(getattr(result, "tags", None) or {})

    tunnels = tunnels or {}
    unicast_remote = getattr(result, "tunnel_remote", "")

    def with_tunnel(i: int, out: OutputTag) -> OutputTag:
        if i not in tunnels:
            return out
        vni, remotes = tunnels[i]
        if unicast_remote and i == result.out_ifindex and result.verdict == "forward":
            remotes = (unicast_remote,)  # known unicast: the VTEP the MAC is behind
        return replace(out, tunnel_vni=vni, tunnel_remotes=remotes)

    def with_tags(ifindexes: Sequence[int]) -> tuple[OutputTag, ...]:
        return tuple(with_tunnel(i, output_tag(name(i), tags.get(i), frame_vid))
                     for i in ifindexes)

    def listed(outs: Sequence[OutputTag]) -> str:
        return ", ".join(o.text(vlans) for o in outs)

    # Name tag states only when VLANs are in play: on a switch without VLANs every output is
    # untagged and saying so on each line is noise.
    vlans = (frame_vid is not None or bool(result.vlan)
             or any(tag.startswith("tagged") for tag in tags.values()))
    verdict = result.verdict
    reason = result.drop_reason if verdict == "drop" else ""
    key = dict(getattr(result, "key", None) or {})
    stages: list[Stage] = []

    # ---- packet
    match = key_match(key, in_port)
    text = match.to_ofctl()
    cut = ", truncated" if truncated else ""
    if reason == "malformed":
        summary = (f"in_port={in_port}, {length} bytes{cut}: the parser could not read the "
                   "headers (malformed)")
    else:
        summary = f"{text} ({length} bytes{cut})"
    stages.append(Stage("packet", summary, Headers(match, length, truncated)))

    # ---- flow table
    if reason not in EARLY_DROPS:
        if result.rule_id == 0:
            ft = FlowTableStage(True, n_rules=n_rules)
            summary = ("table miss: no rule matched, normal switching" if n_rules
                       else "empty table: normal switching")
        else:
            if rule is not None:
                ft = FlowTableStage(False, rule.priority, rule.cookie, rule.match.to_ofctl(),
                                    actions_str(rule.actions), n_rules)
            else:  # the table changed between the run and this lookup
                ft = FlowTableStage(False, result.priority, 0, f"rule id {result.rule_id}", "?",
                                    n_rules)
            summary = (f"priority {ft.priority}, cookie {ft.cookie:#x}: "
                       f"{ft.match or '(match all)'} actions={ft.actions}")
            if rule is not None and any(a.kind == "controller" for a in rule.actions):
                summary += " (a packet-in to the controllers; a trace sends none)"
        stages.append(Stage("flow table", summary, ft))

    # ---- vlan and l2: only for normal / flood switching
    switching = (reason not in EARLY_DROPS + FLOW_DROPS and
                 (result.rule_id == 0 or rule is None or
                  any(a.kind in ("normal", "flood") for a in rule.actions)))
    if switching:
        tagged = frame_vid is not None and frame_vid != 0
        vid = frame_vid or 0
        accepted = reason != "vlan-mismatch"
        mode = vlan_mode(port_vlan)
        wire = f"tagged {vid}" if tagged else "untagged"
        if accepted:
            where = f"VLAN {result.vlan}" if result.vlan else "VLAN 0 (untagged)"
            summary = f"in_port {in_port} ({mode}): {wire} frame -> {where}"
        else:
            summary = f"in_port {in_port} ({mode}) does not accept a {wire} frame: vlan-mismatch"
        stages.append(Stage("vlan", summary,
                            VlanStage(mode, tagged, vid, result.vlan if accepted else 0,
                                      accepted)))
        if accepted:
            dst = key.get("dl_dst")
            dst_text = mac_str(dst) if dst is not None else "?"
            multicast = dst is not None and bool((dst >> 40) & 1)
            flood = tuple(name(i) for i in result.flood)
            if reason == "host-mac-spoof":
                src = key.get("dl_src")
                summary = (f"dl_src {mac_str(src) if src is not None else '?'} is the host's "
                           f"own MAC (the bridge's), sent by port {in_port}: dropped, "
                           "host-mac-spoof")
                l2 = L2Stage(dst_text, multicast, False)
            elif verdict == "flood" or (verdict == "drop" and reason == "no-flood-target") or \
                    (verdict == "to-tc" and not result.fdb_hit):
                if multicast:
                    what = ("broadcast" if dst == FULL["dl_dst"] else "multicast")
                    summary = f"dl_dst {dst_text}: {what}, flood"
                else:
                    summary = f"dl_dst {dst_text}: FDB miss, flood"
                outs = with_tags(result.flood)
                if verdict == "to-tc":
                    summary += " (by TC)"
                else:
                    summary += f" to {listed(outs)}" if flood else ": no port to flood to"
                l2 = L2Stage(dst_text, multicast, False, "", flood, outs)
            elif result.fdb_hit or reason == "same-port":
                port = name(result.out_ifindex) if result.out_ifindex else in_port
                outs = with_tags([result.out_ifindex]) if verdict == "forward" else ()
                summary = f"dl_dst {dst_text}: FDB hit, port {listed(outs) or port}"
                if reason == "same-port":
                    summary += " (the input port: dropped, same-port)"
                elif reason:
                    summary += f" (dropped, {reason})"
                l2 = L2Stage(dst_text, multicast, True, port, (), outs)
            elif verdict == "forward" and result.out_ifindex:
                port = name(result.out_ifindex)  # e.g. the bridge's own MAC: to the host
                outs = with_tags([result.out_ifindex])
                summary = f"dl_dst {dst_text}: to port {listed(outs)}"
                l2 = L2Stage(dst_text, multicast, False, port, (), outs)
            else:
                summary = f"dl_dst {dst_text}: {reason or verdict}"
                l2 = L2Stage(dst_text, multicast, False)
            stages.append(Stage("l2", summary, l2))

    # ---- verdict
    out_ifs: list[int] = list(getattr(result, "outputs", ()) or ())
    if verdict == "forward" and result.out_ifindex:
        out_ifs.append(result.out_ifindex)
    elif verdict == "flood":
        out_ifs.extend(result.flood)
    out_tags = with_tags(_dedupe(out_ifs)) if verdict != "drop" else ()
    outputs = tuple(o.port for o in out_tags)
    if verdict == "drop":
        summary = f"drop ({reason})"
    elif verdict == "pass":
        summary = "pass: not a port of the switch, the kernel handles the frame"
    elif verdict == "to-tc":
        summary = f"to-tc: {result.handoff}; the port's TC program takes the frame on"
    elif verdict == "controller":
        summary = "controller: the frame goes to the controllers only (packet-in)"
    elif outputs:
        summary = f"{verdict}: output to {listed(out_tags)}"
    else:
        summary = f"{verdict}: no output"
    handoff = getattr(result, "handoff", "") if verdict == "to-tc" else ""
    stages.append(Stage("verdict", summary,
                        VerdictStage(verdict, outputs, reason, out_tags, handoff)))
    hook = getattr(result, "hook", "tc")
    stages = [replace(st, hook=hook) for st in stages]
    return TraceReport(bridge, stages, verdict, outputs, reason, out_tags)


def through_hooks(reports: Sequence[TraceReport]) -> TraceReport:
    """One report of a frame that met several hooks (XDP handing it to TC): every hook's
    stages in order, the last hook's verdict."""
    last = reports[-1]
    return replace(last, stages=[st for r in reports for st in r.stages])
