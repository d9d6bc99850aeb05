"""vswitchd: an eBPF-assisted virtual switch for Linux containers and VMs."""

from vswitchd._openssl import install as _install_without_openssl
from vswitchd.netlink._pyroute2 import install as _install_pyroute2

__version__ = "0.1.0"

_install_without_openssl()  # before asyncio, hashlib or ssl is imported: no libcrypto
_install_pyroute2()  # before any module imports pyroute2: without its package __init__
