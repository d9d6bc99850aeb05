"""Per-port VLAN configuration of the eBPF datapath (pure Python: no bcc).

Modes, OVS-like (bpf/lib/vlan.h implements them):
- unconfigured (VlanConfig()): carries every VLAN; untagged = VLAN 0, tagged = its VID; frames
  leave as they are (VLAN 0 untagged, VLAN N tagged N). The bridge device is always this.
- access (access=N): untagged frames are VLAN N; tagged frames are dropped (vlan-mismatch);
  frames leave untagged. A priority tag (VID 0) counts as untagged.
- trunk (trunks={...}, native=0|N): tagged frames of an allowed VID are that VLAN, other tagged
  frames are dropped; untagged frames are the native VLAN, or dropped without one. The native
  VLAN is a member whether or not it is listed in trunks (as in OVS, which adds it); its frames
  leave untagged, those of the other allowed VLANs tagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vswitchd import validate
from vswitchd.datapath.constants import VLAN_BITMAP_WORDS


@dataclass(frozen=True)
class VlanConfig:
    """A port's VLAN mode. Invalid values raise InvalidArgument naming the field ("vlan",
    "trunks", "native_vlan") and the value, at construction."""

    access: int = 0
    trunks: frozenset[int] = frozenset()
    native: int = 0

    def __post_init__(self) -> None:
        # the API's one validator of a VLAN mode (vswitchd.validate.vlan_mode)
        _access, trunks, _native = validate.vlan_mode(self.access, self.trunks, self.native)
        object.__setattr__(self, "trunks", frozenset(trunks))

    @property
    def mode(self) -> str:
        if self.access:
            return "access"
        if self.trunks:
            return "trunk"
        return "unconfigured"

    def carries(self, vid: int) -> bool:
        """Does a port in this mode carry VLAN vid (0 = the untagged VLAN)?"""
        if self.access:
            return vid == self.access
        if self.trunks:
            return vid != 0 and (vid == self.native or vid in self.trunks)
        return True

    def bitmap(self) -> list[int]:
        """The trunk membership as VLAN_BITMAP_WORDS 64-bit words (bit v of word v // 64)."""
        words = [0] * VLAN_BITMAP_WORDS
        for vid in self.trunks:
            words[vid // 64] |= 1 << (vid % 64)
        return words

    @classmethod
    def from_bitmap(cls, words: Iterable[int], native: int) -> VlanConfig:
        trunks = frozenset(
            i * 64 + b for i, w in enumerate(words) for b in range(64) if w >> b & 1
        )
        return cls(trunks=trunks, native=native)


UNCONFIGURED = VlanConfig()
"""The default: carries every VLAN (the bridge device is always this)."""
