"""The real programs against the reference model (reference.py): hypothesis draws a
configuration of the pool's two bridges (VLAN modes, static FDB entries, flow tables) and a
sequence of frames; each frame runs through the TC program with BPF_PROG_TEST_RUN, as a trace
(dry run) and for real, and through the XDP stage on the ports that have one. Verdict, drop
reason, output ports and their tags, the frame's VLAN and the learned FDB must be the model's.
A disagreement fails with the frame in hex, the in port and the whole configuration; hypothesis
shrinks it first. CI: a fixed seed and @budget's examples; `make fuzz`: more, random."""

from __future__ import annotations

import errno
import time
from collections import Counter

import pytest
from hypothesis import example, given, note
from hypothesis import strategies as st
from reference import Config, Decision, Tag, VlanMode, age, initial_fdb, switch
from scenarios import LAYOUT, MACS, Scenario, build_frame, concrete, frames, scenarios

from tests.fuzzing import budget

pytestmark = [pytest.mark.root, pytest.mark.property]

TC_RETVAL = {"drop": 2, "forward": 7, "flood": 7, "pass": 0}
XDP_RETVAL = {"drop": 1, "forward": 4, "flood": 4, "pass": 2}
STATS = {"examples": 0, "frames": 0, "at_xdp": 0, "refused": 0, "seconds": 0.0}


def configure(pool, sc: Scenario):
    """The pool as the scenario says, through the maps; returns the model's Config, the
    ifindex of each name and mac_of (MAC name -> MAC)."""
    from vswitchd.datapath import DpRule, VlanConfig

    dp = pool.dp
    ifindex = {}
    for (br, ports), name in zip(pool.ports.items(), LAYOUT, strict=True):
        ifindex[name] = br
        ifindex.update(zip(LAYOUT[name], ports, strict=True))
    macs = {**MACS, **{f"br:{n}": pool.bridges[ifindex[n]] for n in LAYOUT}}
    config = concrete(sc, ifindex, macs.__getitem__)
    for br in config.bridges:
        for port, mode in br.ports.items():
            dp.set_port_vlan(port, VlanConfig(mode.access, mode.trunks, mode.native))
        for rec in dp.fdb_list(br.ifindex):  # a clean FDB: the bridge's own entry only
            if (rec.mac, rec.vlan) != (br.mac, 0):
                dp.fdb_delete(br.ifindex, rec.mac, rec.vlan)
        for (mac, vlan), port in br.static.items():
            dp.fdb_add_static(br.ifindex, mac, vlan, port)
        dp.flows_sync(br.ifindex, [DpRule(i + 1, r.priority, tuple(sorted(r.fields)), r.actions)
                                   for i, r in enumerate(br.rules)])
    return config, ifindex, macs.__getitem__


def tag_of(frame: bytes) -> Tag:
    return int.from_bytes(frame[14:16], "big") & 0x0FFF \
        if frame[12:14] in (b"\x81\x00", b"\x88\xa8") else None


def _arrival(frame: bytes) -> Tag:
    return tag_of(frame) if len(frame) >= 18 else None


def sent_as(frame: bytes, tag: Tag) -> bytes:
    """FRAME as it leaves with TAG (the outer tag's state; an inner tag is payload): unchanged,
    its tag's VID rewritten (TPID and PCP kept), popped, or an 802.1Q tag pushed."""
    arrived = _arrival(frame)
    if tag == arrived:
        return frame
    if tag is None:
        return frame[:12] + frame[16:]
    if arrived is None:
        return frame[:12] + (0x81000000 | tag).to_bytes(4, "big") + frame[12:]
    tci = int.from_bytes(frame[14:16], "big") & 0xF000 | tag
    return frame[:14] + tci.to_bytes(2, "big") + frame[16:]


def observed(res, frame: bytes) -> tuple:
    """(verdict, reason, output ports as a Counter, {port: tag}) of a dry run."""
    ports = list(res.outputs) + list(res.flood)
    if res.out_ifindex and res.fdb_hit:  # normal's known unicast (a final output is in outputs)
        ports.append(res.out_ifindex)
    tags = {p: _arrival(frame) if t == "as-is" else None if t == "untagged"
            else int(t.split(":")[1]) for p, t in res.tags.items()}
    return res.verdict, res.drop_reason, Counter(ports), tags


def expected(d: Decision) -> tuple:
    tags = dict(d.outputs) if len({p for p, _ in d.outputs}) == len(d.outputs) else None
    return d.verdict, d.reason, Counter(p for p, _ in d.outputs), tags


def agree(dec: Decision, res, frame: bytes) -> str:
    """'' when the dry run RES says what the model's decision DEC says, else what differs."""
    verdict, reason, ports, tags = observed(res, frame)
    reason = "" if reason == "none" else reason
    if (verdict, reason) != (dec.verdict, dec.reason):
        return f"verdict {verdict} {reason!r}, model {dec.verdict} {dec.reason!r}"
    if verdict in ("drop", "pass"):
        return ""
    want_v, _, want_ports, want_tags = expected(dec)
    if ports != want_ports:
        return f"outputs {dict(ports)}, model {dict(want_ports)}"
    if want_tags is not None and tags != want_tags:
        return f"tags {tags}, model {want_tags}"
    if dec.vlan is not None and res.vlan != dec.vlan:
        return f"vlan {res.vlan}, model {dec.vlan}"
    return ""


def fdb_state(dp, config: Config) -> dict:
    return {(br.ifindex, r.vlan, r.mac): (r.ifindex, r.static)
            for br in config.bridges for r in dp.fdb_list(br.ifindex)}


def model_fdb(fdb) -> dict:
    return {k: (e.port, e.static) for k, e in fdb.items()}


def check_sequence(pool, sc: Scenario, specs: list) -> None:
    """Configures the pool as SC says, runs the frames (or "age": the FDB sweep) in order and
    fails at the first disagreement with the model."""
    dp = pool.dp
    config, ifindex, mac_of = configure(pool, sc)
    fdb = initial_fdb(config)
    assert fdb_state(dp, config) == model_fdb(fdb), "the pool's FDB did not reset"
    for step, spec in enumerate(specs):
        if spec == "age":  # the daemon's sweep; aging 0 s: every learned entry is older
            time.sleep(0.005)
            dp.fdb_sweep(0)
            fdb = age(fdb, float("inf"), 0)
            continue
        frame = build_frame(spec, mac_of)
        port = ifindex[spec["port"]]
        where = (f"step {step}: frame {frame.hex()} ({len(frame)} bytes) on {spec['port']} "
                 f"(ifindex {port})\nconfig: {config}\nscenario: {sc}\nframes: {specs}")
        try:  # the kernel refuses some runts before any program runs (an IPv6 EtherType
            dp.run(frame, port, dry_run=True)  # with no whole IPv6 header): nothing to compare
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            STATS["refused"] += 1
            continue
        dry = switch(config, dict(fdb), frame, port, None)
        hooks = ["xdp", "tc"] if port in pool.xdp_ports else ["tc"]
        real_hook = "tc"
        for hook in hooks:
            res = dp.run(frame, port, dry_run=True, hook=hook)
            if hook == "xdp" and res.verdict == "to-tc":
                continue  # XDP leaves it to TC: TC's answer is the one compared
            diff = agree(dry, res, frame)
            assert not diff, f"[{hook} trace] {diff}\n{where}"
            real_hook = hook
            break
        dec = switch(config, fdb, frame, port, time.monotonic())
        real = dp.run(frame, port, dry_run=False, hook=real_hook)
        table = XDP_RETVAL if real_hook == "xdp" else TC_RETVAL
        allowed = {table["drop" if dec.failed else dec.verdict]}
        if dec.verdict == "forward" and dec.rule is not None and not dec.failed:
            allowed.add(table["drop"])  # only clones went out: the original is consumed
        assert real.retval in allowed, \
            f"[{real_hook} run] retval {real.retval}, model {dec.verdict} {dec.reason}\n{where}"
        if dec.verdict == "forward" and len(dec.outputs) == 1 and real.retval == table["forward"]:
            want = sent_as(frame, dec.outputs[0][1])
            if real_hook == "tc" and want[12:14] in (b"\x81\x00", b"\x88\xa8") \
                    and dec.outputs[0][1] is None and _arrival(frame) is not None:
                # a pop at TC (skb_vlan_pop) moves the inner tag of a double-tagged frame into
                # skb->vlan_tci, sent with the frame but not in a test run's output data
                want = want[:12] + want[16:]
            assert real.data == want, \
                f"[{real_hook} run] sent {real.data.hex()}, model {want.hex()}\n{where}"
        assert fdb_state(dp, config) == model_fdb(fdb), \
            f"[{real_hook} run] FDB {fdb_state(dp, config)}, model {model_fdb(fdb)}\n{where}"
        STATS["frames"] += 1
        STATS["at_xdp"] += real_hook == "xdp"


def _frame(port: str, dst: str, src: str, tags: tuple = (), l3: tuple = ("raw", 0x0806, 28),
           cut: int | None = None) -> dict:
    return {"port": port, "dst": dst, "src": src, "tags": tags, "l3": l3, "cut": cut}


_PLAIN = {p: VlanMode() for ports in LAYOUT.values() for p in ports}


@budget(1500)
# the disagreements found so far, each fixed (tests/datapath/test_dp_model_findings.py too):
# a double-tagged runt with its inner tag cut (datapath: now malformed)
@example(Scenario({**_PLAIN, "a2": VlanMode(access=30)}, (), {"a": (), "b": ()}),
         [_frame("a0", "u1", "u2", ((0x88A8, 30), (0x8100, 20)), ("raw", 0x86DD, 9), 18)])
# a frame for the bridge's MAC in VLAN 10 (datapath: to the host alone, not flooded)
@example(Scenario({**_PLAIN, "a0": VlanMode(access=10), "a1": VlanMode(access=10)}, (),
                  {"a": (), "b": ()}), [_frame("a0", "br:a", "u1")])
# a tag pushed for a rule's copy, then stripped for normal (model: the real run drops it)
@example(Scenario(_PLAIN, (), {"a": ((10, (), (("mod_vlan_vid", 10), ("output", "a"),
                                                ("strip_vlan", 0), ("normal", 0))),),
                               "b": ()}), [_frame("a0", "u1", "u2")])
@given(sc=scenarios(), specs=st.lists(st.one_of(frames, frames, frames, st.just("age")),
                                      min_size=1, max_size=6))
def test_the_datapath_does_what_the_model_says(pool, sc, specs):
    note(f"scenario: {sc}")
    start = time.perf_counter()
    check_sequence(pool, sc, specs)
    STATS["examples"] += 1
    STATS["seconds"] += time.perf_counter() - start


def test_report_rate():
    """Prints the differential test's rate (run after it; -s shows it)."""
    if STATS["examples"]:
        print(f"\nmodel vs datapath: {STATS['examples']} examples, {STATS['frames']} frames in "
              f"{STATS['seconds']:.1f} s: {STATS['examples'] / STATS['seconds']:.1f} "
              f"examples/s, {STATS['frames'] / STATS['seconds']:.1f} frames/s; "
              f"{STATS['at_xdp']} frames finished at XDP, {STATS['refused']} refused by "
              "BPF_PROG_TEST_RUN")
