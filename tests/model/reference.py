"""The reference model of the switch's forwarding: the executable specification.

Plain Python, written from the README ("A first session": static FDB entries and the bridge's
own MAC; "The two host topologies": VLANs; "vswctl": flow tables, `trace`, drops) and, where
the README is silent, from the datapath's documented behaviour (bpf/lib/*.h comments) after
deciding it is right; each such choice is marked "(datapath)". It imports nothing from
vswitchd: tests/model/test_datapath_vs_model.py runs the real programs on the same frames and
compares. One frame at a time: `switch(config, fdb, frame, in_port, now)` -> Decision, and the
FDB it leaves (learned entries); `age(fdb, now, aging)` is the daemon's sweep.

What it covers: ports of 1+ bridges, VLAN access/trunk(+native)/unconfigured, the parse of
Ethernet/802.1Q/IPv4/IPv6/TCP/UDP into the flow key (and what makes a frame malformed),
multicast sources, the bridge's own MAC, learning (static entries never learned over), aging,
flooding per VLAN, the flow table (priority, masked fields, actions output/normal/flood/
mod_vlan_vid/strip_vlan/drop), drop reasons. Not covered: tunnels, the controller action,
frames from the host (the bridge device's egress), counters.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, replace

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD = 0x0800, 0x86DD, 0x8100, 0x88A8
TCP, UDP = 6, 17

# A tag state: None = untagged, else the VID of the 802.1Q tag (0: a priority tag).
Tag = int | None


@dataclass(frozen=True)
class VlanMode:
    """README "VLANs": --vlan N (access), --trunks LIST [--native-vlan N], or neither (every
    VLAN: the port carries frames as they are)."""

    access: int = 0
    trunks: frozenset[int] = frozenset()
    native: int = 0

    def classify(self, tag: Tag) -> int | None:
        """The VLAN of a frame arriving with TAG; None: the port does not take it
        (vlan-mismatch). A priority tag (VID 0) counts as untagged (802.1Q)."""
        vid = tag or 0
        if self.access:
            return None if vid else self.access
        if self.trunks or self.native:
            if not vid:
                return self.native or None
            return vid if vid == self.native or vid in self.trunks else None
        return vid

    def egress(self, vlan: int) -> str | None:
        """How the port sends a frame of VLAN vlan: "untagged", "tagged", "as-is" (VLAN 0 on
        an unconfigured port: as the flow actions left it), or None (not a member)."""
        if not (self.access or self.trunks or self.native):
            return "tagged" if vlan else "as-is"
        if not vlan:
            return None  # (datapath) access and trunk ports carry no VLAN 0
        if self.access:
            return "untagged" if vlan == self.access else None
        if vlan == self.native:
            return "untagged"
        return "tagged" if vlan in self.trunks else None


UNCONFIGURED = VlanMode()


@dataclass(frozen=True)
class Rule:
    """A flow rule as the flow-rule parser leaves it: fields (name, value, mask) in the flow
    key's integer form (MACs 48-bit, IPs 128-bit with IPv4 << 96), actions (name, arg) with
    ports as ifindexes. Highest priority wins; the same priority never overlaps (refused)."""

    priority: int
    fields: tuple[tuple[str, int, int], ...]
    actions: tuple[tuple[str, int], ...]

    def matches(self, key: dict[str, int]) -> bool:
        return all(key[name] & mask == value & mask for name, value, mask in self.fields)


@dataclass(frozen=True)
class Bridge:
    ifindex: int
    mac: str
    ports: dict[int, VlanMode]  # the bridge device itself is a port too: unconfigured
    rules: tuple[Rule, ...] = ()
    static: dict[tuple[str, int], int] = field(default_factory=dict)  # (mac, vlan) -> port


@dataclass(frozen=True)
class Config:
    bridges: tuple[Bridge, ...]

    def bridge_of(self, port: int) -> Bridge | None:
        for br in self.bridges:
            if port == br.ifindex or port in br.ports:
                return br
        return None


@dataclass(frozen=True)
class Entry:
    port: int
    static: bool
    seen: float


Fdb = dict[tuple[int, int, str], Entry]  # (bridge, vlan, mac) -> entry


def initial_fdb(config: Config) -> Fdb:
    """The static entries: the bridge's own MAC on the bridge device in VLAN 0 (README: "one of
    them, in every VLAN": the learning step protects it in every VLAN), and the configured ones."""
    fdb: Fdb = {}
    for br in config.bridges:
        fdb[(br.ifindex, 0, br.mac)] = Entry(br.ifindex, True, 0.0)
        for (mac, vlan), port in br.static.items():
            fdb[(br.ifindex, vlan, mac)] = Entry(port, True, 0.0)
    return fdb


def age(fdb: Fdb, now: float, aging: float) -> Fdb:
    """The sweep: learned entries not seen for more than AGING seconds go; static ones stay."""
    return {k: e for k, e in fdb.items() if e.static or now - e.seen <= aging}


@dataclass
class Decision:
    """verdict: "drop" (reason), "forward" (outputs), "flood" (outputs), "pass" (not our
    port). outputs: (port, tag it leaves with) in no particular order; vlan: the frame's VLAN
    inside the switch once classified (None before)."""

    verdict: str
    reason: str = ""
    outputs: list[tuple[int, Tag]] = field(default_factory=list)
    vlan: int | None = None
    rule: Rule | None = None
    failed: str = ""  # what a real run ends in instead ("vlan-failed", see _tag_sequence)
    rule_outputs: int = 0  # how many of outputs are the rule's output actions (sent first)


# ---- parsing ---------------------------------------------------------------------------

class Malformed(Exception):
    pass


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def parse(frame: bytes, in_port: int) -> tuple[dict[str, int], Tag]:
    """The flow key and the tag the frame arrived with. Malformed: shorter than an Ethernet
    header, a cut VLAN tag (an inner one of a double-tagged frame too), or shorter than the
    IP/TCP/UDP headers it declares. One tag is parsed (an inner tag of a double-tagged frame
    is its EtherType, the rest L2-only); IPv6 extension headers are not walked (nw_proto is the
    first next-header, no ports); a non-first IPv4 fragment has no ports; an IP EtherType with
    another version nibble is L2-only."""
    key = dict.fromkeys(("dl_type", "dl_vlan", "nw_proto", "ip_src", "ip_dst", "tp_src",
                         "tp_dst"), 0)
    key["in_port"] = in_port
    if len(frame) < 14:
        raise Malformed
    key["dl_dst"] = int.from_bytes(frame[0:6], "big")
    key["dl_src"] = int.from_bytes(frame[6:12], "big")
    proto, off, tag = struct.unpack("!H", frame[12:14])[0], 14, None
    if proto in (ETH_P_8021Q, ETH_P_8021AD):
        if len(frame) < 18:
            raise Malformed
        tci, proto = struct.unpack("!HH", frame[14:18])
        tag = key["dl_vlan"] = tci & 0x0FFF
        off = 18
        if proto in (ETH_P_8021Q, ETH_P_8021AD) and len(frame) < 22:  # (datapath) a cut
            raise Malformed  # inner tag: the outer one could not be popped
    key["dl_type"] = proto
    rest = frame[off:]
    if proto == ETH_P_IP:
        if len(rest) < 20:  # cut short: malformed if it claims to be IPv4
            if not rest or rest[0] >> 4 == 4:
                raise Malformed
            return key, tag
        if rest[0] >> 4 != 4:
            return key, tag
        ihl = (rest[0] & 0x0F) * 4
        if ihl < 20 or ihl > len(rest):
            raise Malformed
        key["nw_proto"] = rest[9]
        key["ip_src"] = int.from_bytes(rest[12:16], "big") << 96
        key["ip_dst"] = int.from_bytes(rest[16:20], "big") << 96
        if struct.unpack("!H", rest[6:8])[0] & 0x1FFF:
            return key, tag
        _ports(key, rest[ihl:])
    elif proto == ETH_P_IPV6:
        if len(rest) < 40:
            if not rest or rest[0] >> 4 == 6:
                raise Malformed
            return key, tag
        if rest[0] >> 4 != 6:
            return key, tag
        key["nw_proto"] = rest[6]
        key["ip_src"] = int.from_bytes(rest[8:24], "big")
        key["ip_dst"] = int.from_bytes(rest[24:40], "big")
        _ports(key, rest[40:])
    return key, tag


def _ports(key: dict[str, int], l4: bytes) -> None:
    need = {TCP: 20, UDP: 8}.get(key["nw_proto"])
    if need is None:
        return
    if len(l4) < need:
        raise Malformed
    key["tp_src"], key["tp_dst"] = struct.unpack("!HH", l4[:4])


# ---- switching -------------------------------------------------------------------------

def _learn(br: Bridge, fdb: Fdb, vlan: int, src: str, in_port: int, now: float | None) -> str:
    """Learns SRC on IN_PORT in VLAN (not when now is None: a trace); returns a drop reason or
    "". Static entries are never learned over; the bridge's own MAC from any other port is
    host-mac-spoof (README)."""
    old = fdb.get((br.ifindex, vlan, src))
    if old is not None and old.static:
        return "host-mac-spoof" if old.port == br.ifindex != in_port else ""
    if _host_entry(br, fdb, src) is not None and in_port != br.ifindex:
        return "host-mac-spoof"
    if now is not None:
        fdb[(br.ifindex, vlan, src)] = Entry(in_port, False, now)
    return ""


def _host_entry(br: Bridge, fdb: Fdb, mac: str) -> Entry | None:
    """The host's MAC is known in every VLAN (README): its static entry on the bridge device
    (in VLAN 0), or None."""
    entry = fdb.get((br.ifindex, 0, mac))
    return entry if entry is not None and entry.static and entry.port == br.ifindex else None


def _tag_for(want: str, vlan: int, flow_tag: Tag) -> Tag:
    return None if want == "untagged" else vlan if want == "tagged" else flow_tag


def _mode(br: Bridge, port: int) -> VlanMode:
    return br.ports.get(port, UNCONFIGURED)


def _flood(br: Bridge, vlan: int, in_port: int, flow_tag: Tag) -> Decision:
    """Every member but in_port that carries the VLAN, each with the tag its mode wants."""
    outputs = []
    for port in [br.ifindex, *br.ports]:
        want = _mode(br, port).egress(vlan)
        if port != in_port and want is not None:
            outputs.append((port, _tag_for(want, vlan, flow_tag)))
    if not outputs:
        return Decision("drop", "no-flood-target", vlan=vlan)
    return Decision("flood", outputs=outputs, vlan=vlan)


def _tag_sequence(arrived: Tag, d: Decision, n_rule_outputs: int) -> str:
    """(datapath, a documented limitation: bpf/lib/vlan.h) One frame is tagged and untagged
    in turn for the outputs, in the order they are sent: the rule's outputs, then normal's
    port or the flood's (those taking the frame's tag state as it is first). A tag pushed in
    this pass cannot be removed again: the output that needs it removed, and the frame, are
    dropped as vlan-failed (copies sent before it went out). A trace changes no frame and
    shows the decision without that drop. Returns "vlan-failed" or ""."""
    state = {"tagged": arrived is not None, "pushed": False}

    def send(tag: Tag) -> bool:
        if tag is not None:
            state["pushed"] = state["pushed"] or not state["tagged"]
            state["tagged"] = True
        elif state["tagged"]:
            if state["pushed"]:
                return False
            state["tagged"] = False
        return True

    if not all(send(tag) for _, tag in d.outputs[:n_rule_outputs]):
        return "vlan-failed"
    rest = sorted(d.outputs[n_rule_outputs:],  # as-is first (stable)
                  key=lambda out: (out[1] is not None) != state["tagged"])
    return "" if all(send(tag) for _, tag in rest) else "vlan-failed"


def switch(config: Config, fdb: Fdb, frame: bytes, in_port: int, now: float | None
           ) -> Decision:
    """What the switch does with FRAME arriving on IN_PORT at time NOW; learns into FDB (in
    place). now=None is `vswctl trace`: the same decision, nothing learned (README "Tracing"),
    so a destination equal to the source is looked up before it is learned."""
    d = _switch(config, fdb, frame, in_port, now)
    if d.verdict in ("forward", "flood"):
        d.failed = _tag_sequence(_arrival(frame), d, d.rule_outputs)
    return d


def _arrival(frame: bytes) -> Tag:
    if frame[12:14] in (b"\x81\x00", b"\x88\xa8") and len(frame) >= 18:
        return int.from_bytes(frame[14:16], "big") & 0x0FFF
    return None


def _switch(config: Config, fdb: Fdb, frame: bytes, in_port: int, now: float | None
            ) -> Decision:
    br = config.bridge_of(in_port)
    if br is None:
        return Decision("pass")  # not our port: the kernel's
    try:
        key, tag = parse(frame, in_port)
    except Malformed:
        return Decision("drop", "malformed")
    src, dst = _mac(frame[6:12]), _mac(frame[0:6])
    if frame[6] & 1:
        return Decision("drop", "invalid-src-mac")
    rule = max((r for r in br.rules if r.matches(key)), key=lambda r: r.priority, default=None)
    flow_tag: Tag = tag  # the tag state the actions leave (lazy: applied by each output)
    forced: int | None = None  # mod_vlan_vid: the VLAN to switch in, no ingress check
    outputs: list[tuple[int, Tag]] = []
    next_stage = "normal"
    if rule is not None:
        next_stage = "none"
        for name, arg in rule.actions:
            if name == "output" and arg != in_port and (arg in br.ports or arg == br.ifindex):
                outputs.append((arg, flow_tag))  # raw: as the actions left it (OpenFlow)
            elif name == "mod_vlan_vid":
                flow_tag = forced = arg
            elif name == "strip_vlan":
                flow_tag = forced = None
            elif name in ("normal", "flood"):
                next_stage = name
        if next_stage == "none":
            if not outputs:
                return Decision("drop", "flow-drop", rule=rule)
            return Decision("forward", outputs=outputs, rule=rule, rule_outputs=len(outputs))
    vlan = forced if forced is not None else _mode(br, in_port).classify(flow_tag)
    if vlan is None:
        return Decision("drop", "vlan-mismatch", outputs=outputs, rule=rule)
    if next_stage == "normal":
        if int(src.replace(":", ""), 16):  # an all-zero source is not learned
            reason = _learn(br, fdb, vlan, src, in_port, now)
            if reason:
                return Decision("drop", reason, outputs=outputs, vlan=vlan, rule=rule)
        entry = None if frame[0] & 1 else fdb.get((br.ifindex, vlan, dst)) \
            or _host_entry(br, fdb, dst)
        if entry is not None:
            if entry.port == in_port:
                return Decision("drop", "same-port", outputs=outputs, vlan=vlan, rule=rule)
            want = _mode(br, entry.port).egress(vlan)
            if want is None:  # e.g. a static entry to a port outside the VLAN
                return Decision("drop", "vlan-mismatch", outputs=outputs, vlan=vlan, rule=rule)
            return Decision("forward", outputs=[*outputs, (entry.port,
                                                           _tag_for(want, vlan, flow_tag))],
                            vlan=vlan, rule=rule, rule_outputs=len(outputs))
    flood = _flood(br, vlan, in_port, flow_tag)
    return replace(flood, outputs=outputs + flood.outputs, rule=rule, rule_outputs=len(outputs))
