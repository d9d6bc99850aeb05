"""The eBPF datapath (bpf/datapath.c loaded with bcc): public API.

Importing this package does not import bcc; Datapath() does.
"""

from vswitchd.datapath.drop_reasons import DROP_REASONS
from vswitchd.datapath.flows import (
    FLOW_FIELDS,
    MAX_FLOW_ACTIONS,
    MAX_FLOW_MASKS,
    DpRule,
    FlowCounters,
)
from vswitchd.datapath.loader import (
    Datapath,
    FdbRecord,
    PortCounters,
    PortKind,
    RunResult,
    attached_programs,
    ebpf_unsupported_reason,
)
from vswitchd.datapath.vlan import VlanConfig
from vswitchd.datapath.watch import MAX_WATCHERS, WatchEvent, WatchFilter

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
