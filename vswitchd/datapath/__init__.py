"""The eBPF datapath (bpf/datapath.c loaded with bcc): public API.

Importing this package does not import bcc; Datapath() does.
"""

from vswitchd.datapath.drop_reasons import DROP_REASONS
from vswitchd.datapath.loader import (
    Datapath,
    FdbRecord,
    PortCounters,
    PortKind,
    RunResult,
    ebpf_unsupported_reason,
)

__all__ = [
    "DROP_REASONS",
    "Datapath",
    "FdbRecord",
    "PortCounters",
    "PortKind",
    "RunResult",
    "ebpf_unsupported_reason",
]
