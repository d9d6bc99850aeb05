"""A port's VLAN mode as one word, the same in the daemon's logs and vswctl's tables.

Imports nothing beyond the standard library: the daemon and the clients both use it.
"""

from __future__ import annotations

from collections.abc import Iterable


def vlan_mode_text(vlan: int, trunks: Iterable[int], native_vlan: int) -> str:
    """'access:10', 'trunk:10,20' (sorted), 'trunk:10,20/native:5', or 'all' (no VLAN
    settings: the port carries every VLAN)."""
    if vlan:
        return f"access:{vlan}"
    ids = sorted(trunks)
    if ids:
        text = "trunk:" + ",".join(str(v) for v in ids)
        return text + (f"/native:{native_vlan}" if native_vlan else "")
    return "all"
