"""The API's enums as lower-case words (PORT_TYPE_TAP -> "tap", XDP_NATIVE -> "native"): the
.proto is the one list of datapaths, port types and XDP modes, for the daemon, vswctl and the
configuration file alike."""

from __future__ import annotations

from vswapi import switch_pb2 as pb


def enum_words(enum: object, prefix: str) -> dict[str, int]:
    """An API enum's values by lower-case word, the UNSPECIFIED (0) value left out."""
    return {name.removeprefix(prefix).lower(): value
            for name, value in enum.items() if value}  # type: ignore[attr-defined]


# auto, native, generic, off: what a port may ask for (XdpMode)
XDP_MODES: tuple[str, ...] = tuple(enum_words(pb.XdpMode, "XDP_"))
