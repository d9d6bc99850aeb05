"""Hypothesis strategies for the differential test: configurations (VLAN modes of the pool's
ports, static FDB entries, flow tables) and frame sequences, in symbolic form (port and MAC
names), made concrete against the device pool by `concrete()` and `build_frame()`."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from hypothesis import strategies as st
from reference import Bridge, Config, Rule, VlanMode

# the pool's shape (conftest.py): bridge name -> its ports' names
LAYOUT = {"a": ("a0", "a1", "a2"), "b": ("b0", "b1")}
VIDS = (10, 20, 30)
MACS = {"u1": "02:00:00:00:00:01", "u2": "02:00:00:00:00:02", "u3": "02:00:00:00:00:03",
        "bcast": "ff:ff:ff:ff:ff:ff", "mcast": "01:00:5e:00:00:fb", "zero": "00:00:00:00:00:00",
        "msrc": "33:33:00:00:00:01"}
# "br:a" / "br:b": the bridge's own MAC, known only once the pool exists
DSTS = ("u1", "u2", "u3", "bcast", "mcast", "br:a", "br:b")
SRCS = ("u1", "u2", "u3", "zero", "msrc", "mcast", "br:a", "br:b")
IPV4 = ("10.0.0.1", "10.0.0.2", "10.0.1.1")
IPV6 = ("fd00::1", "fd00::2")


@dataclass(frozen=True)
class Scenario:
    """A symbolic configuration: port name -> VlanMode, static entries (bridge, mac name, vlan,
    port name), rules per bridge (priority, fields with symbolic values, actions)."""

    modes: dict[str, VlanMode]
    static: tuple[tuple[str, str, int, str], ...]
    rules: dict[str, tuple[tuple[int, tuple, tuple], ...]]


vlan_modes = st.one_of(
    st.just(VlanMode()),
    st.sampled_from(VIDS).map(lambda v: VlanMode(access=v)),
    st.builds(lambda t, n: VlanMode(trunks=frozenset(t), native=n),
              st.sets(st.sampled_from(VIDS), min_size=1), st.sampled_from((0, *VIDS))),
)


def _field(bridge: str):
    ports = (bridge, *LAYOUT[bridge])
    return st.one_of(
        st.tuples(st.just("in_port"), st.sampled_from(ports), st.just(0xFFFFFFFF)),
        st.tuples(st.just("dl_dst"), st.sampled_from(DSTS),
                  st.sampled_from((0xFFFFFFFFFFFF, 0x010000000000))),
        st.tuples(st.just("dl_src"), st.sampled_from(SRCS), st.just(0xFFFFFFFFFFFF)),
        st.tuples(st.just("dl_type"), st.sampled_from((0x0800, 0x86DD, 0x0806, 0x8100)),
                  st.just(0xFFFF)),
        st.tuples(st.just("dl_vlan"), st.sampled_from((0, *VIDS)), st.just(0xFFF)),
        st.tuples(st.just("nw_proto"), st.sampled_from((1, 6, 17, 0, 44)), st.just(0xFF)),
        st.tuples(st.just("tp_dst"), st.sampled_from((53, 80, 443)),
                  st.sampled_from((0xFFFF, 0xFFF0))),
        st.tuples(st.just("ip_dst"), st.sampled_from(IPV4).map(lambda a: ("ip", a)),
                  st.just(0xFFFFFF00 << 96)),  # /24
    )


def _actions(bridge: str):
    ports = (bridge, *LAYOUT[bridge])
    step = st.one_of(st.sampled_from(ports).map(lambda p: ("output", p)),
                     st.sampled_from(VIDS).map(lambda v: ("mod_vlan_vid", v)),
                     st.just(("strip_vlan", 0)), st.just(("drop", 0)))
    terminal = st.sampled_from((None, "normal", "flood"))
    tail = st.lists(st.sampled_from(ports).map(lambda p: ("output", p)), max_size=1)
    return st.builds(lambda head, t, after: tuple(head) + ((t, 0),) + tuple(after)
                     if t else tuple(head),
                     st.lists(step, max_size=4), terminal, tail)


def _rules(bridge: str):
    rule = st.tuples(st.lists(_field(bridge), max_size=3, unique_by=lambda f: f[0])
                     .map(tuple), _actions(bridge))
    return st.lists(rule, max_size=4).flatmap(
        lambda rs: st.permutations(range(1, 5 * len(rs) + 2)).map(
            lambda prios: tuple((prios[i] * 10, f, a) for i, (f, a) in enumerate(rs))))


@st.composite
def scenarios(draw) -> Scenario:
    modes = {p: draw(vlan_modes) for ports in LAYOUT.values() for p in ports}
    static = tuple(draw(st.lists(
        st.sampled_from(list(LAYOUT)).flatmap(lambda b: st.tuples(
            st.just(b), st.sampled_from(("u1", "u2", "u3")), st.sampled_from((0, *VIDS)),
            st.sampled_from((b, *LAYOUT[b])))),
        max_size=2, unique_by=lambda s: s[:3])))
    rules = {b: draw(st.one_of(st.just(()), _rules(b))) for b in LAYOUT}
    return Scenario(modes, static, rules)


# ---- frames ----------------------------------------------------------------------------

_tags = st.one_of(
    st.just(()),
    st.tuples(st.tuples(st.just(0x8100), st.sampled_from((0, *VIDS, 40)))),  # 0: priority tag
    st.tuples(st.tuples(st.just(0x88A8), st.sampled_from(VIDS)),
              st.tuples(st.just(0x8100), st.sampled_from(VIDS))),  # double-tagged (QinQ)
)
_l3 = st.one_of(
    st.tuples(st.just("ipv4"), st.sampled_from((5, 6, 8)), st.sampled_from((1, 6, 17)),
              st.sampled_from((0, 0x2000, 0x0001, 0x2010)), st.sampled_from(IPV4),
              st.sampled_from(IPV4), st.sampled_from((53, 80, 443))),
    st.tuples(st.just("ipv6"), st.sampled_from((6, 17, 58, 0, 44)), st.sampled_from(IPV6),
              st.sampled_from(IPV6), st.sampled_from((53, 80, 443))),
    st.tuples(st.just("raw"), st.sampled_from((0x0806, 0x88CC, 0x0800, 0x86DD)),
              st.integers(0, 46)),
)

frames = st.fixed_dictionaries({
    "port": st.sampled_from([p for ports in LAYOUT.values() for p in ports]),
    "dst": st.sampled_from(DSTS),
    "src": st.sampled_from(SRCS),
    "tags": _tags,
    "l3": _l3,
    "cut": st.one_of(st.none(), st.none(), st.integers(14, 60)),  # runts and truncated headers
})


def _ip(addr: str) -> bytes:
    import ipaddress

    return ipaddress.ip_address(addr).packed


def _l4(proto: int, dport: int) -> bytes:
    if proto == 6:
        return struct.pack("!HHIIBBHHH", 1234, dport, 0, 0, 0x50, 0x02, 1024, 0, 0)
    if proto == 17:
        return struct.pack("!HHHH", 1234, dport, 8, 0)
    return bytes(8)  # ICMP, or an extension header's 8 bytes (next header 0 = hop-by-hop...)


def build_frame(spec: dict, mac_of) -> bytes:
    """The frame of a frame spec; mac_of(name) -> MAC string (the bridges' MACs included)."""
    out = bytes.fromhex(mac_of(spec["dst"]).replace(":", "")) + \
        bytes.fromhex(mac_of(spec["src"]).replace(":", ""))
    for tpid, vid in spec["tags"]:
        out += struct.pack("!HH", tpid, vid)
    kind = spec["l3"][0]
    if kind == "ipv4":
        _, ihl, proto, frag, src, dst, dport = spec["l3"]
        l4 = _l4(proto, dport)
        opts = bytes([1] * (ihl * 4 - 20))  # NOP options
        total = ihl * 4 + len(l4)
        out += struct.pack("!HBBHHHBBH4s4s", 0x0800, 0x40 | ihl, 0, total, 1, frag, 64, proto,
                           0, _ip(src), _ip(dst)) + opts + l4
    elif kind == "ipv6":
        _, nexthdr, src, dst, dport = spec["l3"]
        ext = b""
        if nexthdr in (0, 44):  # an extension header, then UDP
            ext = bytes([17, 0]) + bytes(6)
        l4 = ext + _l4(17 if ext else nexthdr, dport)
        out += struct.pack("!HIHBB16s16s", 0x86DD, 0x60000000, len(l4), nexthdr, 64,
                           _ip(src), _ip(dst)) + l4
    else:
        _, ethertype, n = spec["l3"]
        out += struct.pack("!H", ethertype) + bytes(range(n))
    if spec["cut"] is not None:
        out = out[:spec["cut"]]
    return out


def concrete(sc: Scenario, ifindex: dict[str, int], mac_of) -> Config:
    """The model's configuration of a scenario on the pool (names -> ifindexes, MACs)."""
    def value(name: str, v):
        if name == "in_port":
            return ifindex[v]
        if name in ("dl_src", "dl_dst"):
            return int(mac_of(v).replace(":", ""), 16)
        if isinstance(v, tuple):  # ("ip", address)
            return int.from_bytes(_ip(v[1]), "big") << 96
        return v

    bridges = []
    for b, ports in LAYOUT.items():
        rules = tuple(
            Rule(prio, tuple((n, value(n, v), m) for n, v, m in fields),
                 tuple((a, ifindex[arg] if a == "output" else arg) for a, arg in actions))
            for prio, fields, actions in sc.rules[b])
        static = {(mac_of(m), vlan): ifindex[p] for br, m, vlan, p in sc.static if br == b}
        bridges.append(Bridge(ifindex[b], mac_of(f"br:{b}"),
                              {ifindex[p]: sc.modes[p] for p in ports}, rules, static))
    return Config(tuple(bridges))
