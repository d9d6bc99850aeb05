"""The eBPF datapath (bpf/datapath.c, compiled by bcc in a process of its own): public API.

The daemon never imports bcc: compiler.py does, in the short-lived compiler process.
"""

from vswitchd.datapath.attach import attached_programs
from vswitchd.datapath.build import ebpf_unsupported_reason
from vswitchd.datapath.constants import DROP_REASONS, MAX_FLOW_ACTIONS, MAX_FLOW_MASKS, MAX_WATCHERS
from vswitchd.datapath.counters import PortCounters
from vswitchd.datapath.fdb import FdbRecord
from vswitchd.datapath.flows import FLOW_FIELDS, DpRule, FlowCounters
from vswitchd.datapath.loader import Datapath
from vswitchd.datapath.ports import PortKind
from vswitchd.datapath.runs import RunResult
from vswitchd.datapath.vlan import VlanConfig
from vswitchd.datapath.watch import WatchEvent, WatchFilter

__all__ = [
    "DROP_REASONS",
    "FLOW_FIELDS",
    "MAX_FLOW_ACTIONS",
    "MAX_FLOW_MASKS",
    "MAX_WATCHERS",
    "Datapath",
    "DpRule",
    "FlowCounters",
    "FdbRecord",
    "PortCounters",
    "PortKind",
    "RunResult",
    "VlanConfig",
    "WatchEvent",
    "WatchFilter",
    "attached_programs",
    "ebpf_unsupported_reason",
]
