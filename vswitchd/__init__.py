"""vswitchd: an eBPF-assisted virtual switch for Linux containers and VMs."""

__version__ = "0.1.0"
