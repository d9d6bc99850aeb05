"""Kernel networking over netlink (pyroute2): namespaces, links, kernel-bridge FDB; tc in tc.py."""

from vswitchd.netlink.links import KernelFdbEntry, LinkInfo, Links, LinkStats

__all__ = ["KernelFdbEntry", "LinkInfo", "LinkStats", "Links"]
