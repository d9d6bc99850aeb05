"""Placeholder for the XDP attach module (another branch writes it; at merge the real file
replaces this one): only the state the datapath reports, which the switch imports."""

from dataclasses import dataclass


@dataclass(frozen=True)
class XdpState:
    mode: str          # "native" | "generic" | "off"
    reason: str = ""   # why the mode is not what was asked (a fallback), or why it is off
