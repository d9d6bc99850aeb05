"""Network namespaces: names under /run/netns, paths such as /proc/PID/ns/net.

A namespace reference ("ref") is either a plain name ("c1" -> /run/netns/c1, what `ip netns`
manages) or an absolute path to a namespace file (e.g. /proc/123/ns/net of a container's process).
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vswitchd.errors import AlreadyExists, InvalidArgument, NotFound, Unavailable

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED, MNT_DETACH = 0x1000, 0x4000, 1 << 20, 2
NS_GET_NSTYPE = 0xB703  # ioctl on a namespace fd, returns its CLONE_NEW* type (Linux >= 4.11)

# What `ip netns` accepts is "anything without '/'"; we accept a conservative, shell-safe subset
# that still covers Docker/CNI/Podman names (hex ids, "cni-<uuid>").
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")

_libc = ctypes.CDLL(None, use_errno=True)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise InvalidArgument(
            "netns",
            name,
            "is not a valid namespace name (1-64 characters: letters, digits, '_', '.', '-'; "
            "or give an absolute path such as /proc/PID/ns/net)",
        )
    return name


def is_named(ref: str) -> bool:
    """True for a plain name that lives under /run/netns, False for a path."""
    return isinstance(ref, str) and bool(_NAME_RE.match(ref))


def resolve(ref: str) -> str:
    """The namespace file for REF: a name maps to /run/netns/NAME, an absolute path is kept."""
    if isinstance(ref, str) and ref.startswith("/"):
        if "\0" in ref:
            raise InvalidArgument("netns", ref, "must not contain NUL")
        return ref
    return os.path.join(NETNS_DIR, _check_name(ref))


def is_own(ref: str) -> bool:
    """True if REF is the network namespace this process runs in, by whatever path it is named
    (/proc/self/ns/net, /proc/PID/ns/net of the daemon, a symlink, `//proc/./1/../self/ns/net`,
    a name under /run/netns bound to it): the kernel resolves the path, and the namespace is
    known by its inode."""
    try:
        target = os.stat(resolve(ref))
        own = os.stat("/proc/self/ns/net")
    except (OSError, ValueError):
        return False
    return (target.st_dev, target.st_ino) == (own.st_dev, own.st_ino)


def _is_netns_fd(fd: int) -> bool:
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def exists(ref: str) -> bool:
    """True if REF names a live network namespace (not a stale or unrelated file)."""
    path = resolve(ref)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _is_netns_fd(fd)
    finally:
        os.close(fd)


def open_netns(ref: str) -> int:
    """Open REF as a network-namespace fd (caller closes it). NotFound if there is none."""
    path = resolve(ref)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {ref} does not exist ({path} not found)") from None
    except OSError as exc:
        raise NotFound(f"network namespace {ref} cannot be opened: {exc.strerror}") from None
    if not _is_netns_fd(fd):
        os.close(fd)
        raise NotFound(f"network namespace {ref}: {path} is not a network namespace")
    return fd


def create_named(name: str) -> str:
    """Create /run/netns/NAME (like `ip netns add`) and return its path."""
    path = resolve(_check_name(name))
    if exists(name):
        raise AlreadyExists(f"network namespace {name} already exists")
    if os.path.lexists(path):
        # A leftover file without a namespace mounted on it (e.g. a crash mid-create): reuse.
        _remove_path(name)
    try:
        _create(path)
    except OSError as exc:
        _remove_path(name)
        raise Unavailable(f"cannot create network namespace {name}: {exc}") from None
    if not exists(name):
        _remove_path(name)
        raise Unavailable(f"cannot create network namespace {name}: not mounted at {path}")
    return path


def _mount(source: str, target: str, flags: int, what: str) -> None:
    if _libc.mount(source.encode(), target.encode(), b"none", flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _share_netns_dir() -> None:
    """/run/netns a shared mount, bound onto itself first if it is no mount point, as `ip
    netns add` does: a namespace mounted there is then seen from every mount namespace."""
    os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
    try:
        _mount("", NETNS_DIR, MS_SHARED | MS_REC, "making /run/netns shared")
    except OSError:
        _mount(NETNS_DIR, NETNS_DIR, MS_BIND | MS_REC, "binding /run/netns onto itself")
        _mount("", NETNS_DIR, MS_SHARED | MS_REC, "making /run/netns shared")


def _create(path: str) -> None:
    """A new network namespace bound at path. A thread of its own unshares its network
    namespace (that moves the thread only) and binds it; the thread then ends, and the
    namespace lives on through the mount. pyroute2 forked a process for this: 17 ms."""
    _share_netns_dir()
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
    failure: list[OSError] = []

    def work() -> None:
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare: {os.strerror(err)}")
            _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, MS_BIND,
                   f"binding the namespace at {path}")
        except OSError as exc:
            failure.append(exc)

    thread = threading.Thread(target=work, name="vsw-netns-create")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _remove_path(name: str) -> None:
    path = resolve(name)
    _libc.umount2(path.encode(), MNT_DETACH)  # EINVAL when nothing is mounted: a leftover
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_named(name: str) -> None:
    """Remove /run/netns/NAME (like `ip netns del`); no error if it is already gone."""
    _check_name(name)
    try:
        _remove_path(name)
    except OSError as exc:
        raise Unavailable(f"cannot remove network namespace {name}: {exc.strerror}") from None


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextmanager
def entered(ref: str) -> Iterator[None]:
    """Run a block with the calling thread (only) in namespace REF, then return it home.

    Sockets opened inside the block stay bound to REF after it ends.
    """
    target = open_netns(ref)
    try:
        home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    except BaseException:
        os.close(target)
        raise
    try:
        try:
            _setns(target)
        except OSError as exc:
            raise Unavailable(f"cannot enter network namespace {ref}: {exc}") from None
        try:
            yield
        finally:
            try:
                _setns(home)
            except OSError as exc:  # never expected: the thread is left in the wrong namespace
                raise RuntimeError(
                    f"thread {threading.get_native_id()} cannot return to its network namespace "
                    f"after {ref}: {exc}"
                ) from exc
    finally:
        os.close(target)
        os.close(home)


__all__ = [
    "NETNS_DIR",
    "create_named",
    "entered",
    "exists",
    "is_named",
    "is_own",
    "open_netns",
    "remove_named",
    "resolve",
]
