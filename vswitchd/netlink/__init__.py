"""Kernel networking over netlink (pyroute2): namespaces (netns.py), links and the kernel-bridge
FDB (links.py), tc (tc.py), NAT (nat.py); kernel errors -> SwitchError (errors.py)."""
