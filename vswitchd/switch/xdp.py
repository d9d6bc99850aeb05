"""XDP on the ports of a bridge (issue 12): each port's mode, the ports the XDP programs may
redirect frames to as XDP frames (the targets), and NAPI on the peers of veth ports.

- A port's mode is what it asked for (spec.xdp), else its type's default (PortDriver.xdp_default:
  auto for TAPs and uplinks, off for veths), on bridges whose datapath runs programs (off on
  kernel bridges). The datapath attaches it: auto is native where the driver can, else generic
  with the reason.
- Targets, by the port type (PortDriver.xdp_target): a TAP always; a system port while it got
  native XDP and is not a veth; a veth only while it runs XDP itself (asked explicitly) and its
  peer has NAPI; others never. Frames for a port that is not a target reach it through TC.
  Container veths are no targets by default because TC is faster into them: its
  bpf_redirect_peer enters the namespace's stack at once, where an XDP redirect queues the frame
  on the peer's NAPI ring and builds its skb there (bench/xdp_paths.py: TAP -> container 0.386
  Mpps through XDP, 0.556 through TC).
- NAPI on veth peers: a frame redirected at XDP into a veth is delivered only if the veth's peer
  has NAPI, which GRO on the peer gives (Linux 5.13 and later; no XDP program needed there).
  While a veth port runs XDP, the daemon turns GRO on at its peer, remembering that it did
  (PortFacts.peer_gro); when the port's XDP goes off (set-port --xdp off, del-port) it turns off
  what it turned on and clears the target. A peer whose GRO cannot be turned on is no target
  (logged): its frames go through TC.

The targets marked are remembered by ifindex while the daemon runs; a restart's reconciliation
sets them all again (the XDP programs and their links survive in bpffs).
"""

from __future__ import annotations

import logging
from dataclasses import replace

from vswitchd import ports as port_types
from vswitchd.datapath.xdp import XdpState
from vswitchd.errors import SwitchError
from vswitchd.model import Bridge, Port, PortSpec
from vswitchd.switch.context import Context
from vswitchd.txn import NoUndo, Txn
from vswitchd.views import PortView

log = logging.getLogger(__name__)


class XdpManager:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._targets: dict[int, bool] = {}  # ifindex -> marked as a target, as last set
        self._failed: dict[str, str] = {}    # port -> why reconciliation could not set its mode
        self._gro_failed: set[str] = set()   # veth ports whose peer's GRO could not be set

    def asked(self, br: Bridge, spec: PortSpec) -> str:
        """The mode in force for a port of BR with SPEC (auto, native, generic or off)."""
        if not self.ctx.backend(br).runs_programs:
            return "off"
        return spec.xdp or port_types.driver(spec.type).xdp_default

    # ---- one port's mode -----------------------------------------------------------------

    def attach(self, br: Bridge, port: Port, txn: Txn) -> XdpState:
        """After PORT was attached to the datapath: its XDP mode (undone: off). A new port has
        no XDP program, so off asks nothing of the datapath."""
        backend, name = self.ctx.backend(br), port.name
        mode = self.asked(br, port.spec)
        self._failed.pop(name, None)
        if mode == "off":
            return backend.port_xdp(name)
        return txn.step(f"set XDP mode {mode} on {name}",
                        lambda: backend.set_port_xdp(br.name, name, mode),
                        lambda: backend.set_port_xdp(br.name, name, "off"))

    def change(self, br: Bridge, port: Port, spec: PortSpec, txn: Txn) -> None:
        """set-port --xdp: PORT's mode becomes what SPEC asks for (undone: the old one); the
        bridge's targets and peers are arrange()'s."""
        backend, name = self.ctx.backend(br), port.name
        backend.check_xdp(br.name, spec)
        old, new = self.asked(br, port.spec), self.asked(br, spec)
        if old == new:
            return
        txn.step(f"set XDP mode of {name}: {old} -> {new}",
                 lambda: backend.set_port_xdp(br.name, name, new),
                 lambda: backend.set_port_xdp(br.name, name, old))
        self._failed.pop(name, None)

    def restore(self, br: Bridge, port: Port) -> None:
        """Reconciliation: the stored mode again (the datapath swaps a pinned link's program);
        a failure leaves the port forwarding through TC, logged and reported in its view."""
        mode = self.asked(br, port.spec)
        try:
            self.ctx.backend(br).set_port_xdp(br.name, port.name, mode)
        except SwitchError as exc:
            self._failed[port.name] = f"XDP mode {mode} not restored: {exc}"
            log.error("port %s of bridge %s: XDP mode %s not restored: %s", port.name, br.name,
                      mode, exc)
        else:
            self._failed.pop(port.name, None)

    def forget(self, br: Bridge, port: Port, datapath: bool = True) -> None:
        """Before PORT is detached (the datapath detaches its program): take back its target
        mark and the GRO the daemon turned on at its peer (best effort, logged). Not
        datapath: the mark stays for the backend's remove_bridge to clear."""
        info = self.ctx.links.get(port.name)
        kind = self.ctx.driver(port).xdp_target
        if (info is not None and self._targets.pop(info.ifindex, kind != "never")
                and datapath):
            try:
                self.ctx.backend(br).set_xdp_target(port.name, False)
            except SwitchError as exc:
                log.warning("port %s: XDP target mark not cleared: %s", port.name, exc)
        if port.facts.peer_gro and info is not None:  # no veth, no peer: nothing to turn off
            spec = port.spec
            try:
                self.ctx.ethtool.set_gro(spec.peer_name, spec.netns, False)
            except SwitchError as exc:
                log.warning("port %s: GRO not turned off again at its peer %s in network "
                            "namespace %s: %s", port.name, spec.peer_name, spec.netns, exc)
        port.facts = replace(port.facts, peer_gro=False)
        self._failed.pop(port.name, None)
        self._gro_failed.discard(port.name)

    # ---- the bridge's targets and peers --------------------------------------------------

    def arrange(self, br: Bridge, txn: Txn, only: Port | None = None) -> None:
        """Targets and veth peers' GRO as the bridge's ports' XDP states call for (see the
        module's docstring); every change through TXN. A port's target and peer depend on
        that port alone, so after one port changed (ONLY) the others are not read (at a
        hundred ports, reading them all was most of an add-port), except those whose peer's
        GRO could not be set last time: they are tried again."""
        ctx = self.ctx
        backend = ctx.backend(br)
        if not backend.runs_programs:
            return
        ports = list(br.ports.values()) if only is None else [only] + [
            p for p in br.ports.values() if p.name in self._gro_failed and p is not only]
        present = [(p, info) for p in ports
                   if p.name not in ctx.missing and (info := ctx.links.get(p.name)) is not None]
        states = {p.name: backend.port_xdp(p.name) for p, _info in present}
        for port, info in present:
            kind = ctx.driver(port).xdp_target
            if kind == "never":
                continue
            if kind == "peer-napi":  # the veth runs XDP itself
                active = states[port.name].mode != "off"
                want = self._peer_napi(br, port, active, txn) and active
            elif kind == "native":
                want = states[port.name].mode == "native" and info.kind != "veth"
            else:
                want = kind == "always"
            self._target(br, port.name, info.ifindex, want, txn)

    def settle(self, br: Bridge) -> None:
        """arrange() without undo, after ports went or came back (failures logged)."""
        try:
            self.arrange(br, NoUndo())
        except SwitchError as exc:
            log.error("bridge %s: XDP targets and veth peers not arranged: %s", br.name, exc)

    def _peer_napi(self, br: Bridge, port: Port, active: bool, txn: Txn) -> bool:
        """GRO at the veth's peer on while the port runs XDP (off again after, if the daemon
        turned it on); whether it is on now."""
        self._gro_failed.discard(port.name)
        if not active and not port.facts.peer_gro:
            return False
        ethtool, spec = self.ctx.ethtool, port.spec
        peer, ns = spec.peer_name, spec.netns
        where = f"{peer} in network namespace {ns}"
        try:
            on = ethtool.gro(peer, ns)
            if active and not on:
                txn.step(f"turn GRO on at {where} (NAPI for XDP redirects into {port.name})",
                         lambda: ethtool.set_gro(peer, ns, True),
                         lambda: ethtool.set_gro(peer, ns, False))
                self._remember_gro(port, True, txn)
                log.info("port %s: GRO on at its peer %s (the port runs XDP)", port.name, where)
                return True
            if not active:  # the daemon turned it on
                if on:
                    txn.step(f"turn GRO off again at {where}",
                             lambda: ethtool.set_gro(peer, ns, False),
                             lambda: ethtool.set_gro(peer, ns, True))
                    log.info("port %s: GRO off again at its peer %s (the port runs no XDP)",
                             port.name, where)
                self._remember_gro(port, False, txn)
                return False
            return on
        except SwitchError as exc:
            log.warning("port %s: GRO at its peer %s not %s: %s; frames for it go through TC",
                        port.name, where, "turned on" if active else "turned off again", exc)
            self._gro_failed.add(port.name)
            return False

    @staticmethod
    def _remember_gro(port: Port, on: bool, txn: Txn) -> None:
        old = port.facts
        txn.step("remember who set the peer's GRO",
                 lambda: setattr(port, "facts", replace(old, peer_gro=on)),
                 lambda: setattr(port, "facts", old))

    def _target(self, br: Bridge, name: str, ifindex: int, want: bool, txn: Txn) -> None:
        known = self._targets.get(ifindex)
        if known == want:
            return
        backend = self.ctx.backend(br)

        def do() -> None:
            backend.set_xdp_target(name, want)
            self._targets[ifindex] = want

        def undo() -> None:
            backend.set_xdp_target(name, bool(known))
            if known is None:
                self._targets.pop(ifindex, None)
            else:
                self._targets[ifindex] = known

        txn.step(f"{'mark' if want else 'unmark'} {name} as an XDP target", do, undo)

    # ---- what is reported ----------------------------------------------------------------

    def view(self, br: Bridge, port: Port, view: PortView) -> PortView:
        """VIEW with the port's XDP mode in force, what it got, and why."""
        state = self.ctx.backend(br).port_xdp(port.name)
        reason = state.reason
        if state.mode == "off" and port.name in self._failed:
            reason = self._failed[port.name]
        return replace(view, xdp=self.asked(br, port.spec), xdp_mode=state.mode,
                       xdp_reason=reason)
