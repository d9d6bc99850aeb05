"""What the daemon and its clients share about names and values in messages: the one rule for an
interface name (the kernel's), and how a message quotes a value a user gave.

Imports nothing beyond the standard library: the daemon and the clients both use it.
"""

from __future__ import annotations

IFNAMSIZ = 16                    # the kernel's limit, the terminating NUL included
MAX_IFNAME_BYTES = IFNAMSIZ - 1
# The bytes the kernel's isspace() takes for white space (lib/ctype.c): a name holding one is
# refused by the kernel, even inside a UTF-8 character (U+00E0 'à' is C3 A0).
_KERNEL_SPACES = frozenset(b"\t\n\v\f\r \xa0")
MAX_SHOWN = 80                   # characters of a user's value that a message quotes (paths fit)


def _length(n: int) -> str:
    return f"{n:,}".replace(",", " ")


def clip(text: object) -> str:
    """TEXT for a message, unquoted (a name): whole when short, else `aaaa… (100 000
    characters)`."""
    s = str(text)
    if len(s) <= MAX_SHOWN:
        return s
    return f"{s[:MAX_SHOWN]}… ({_length(len(s))} characters)"


def shown(value: object) -> str:
    """VALUE for a message, quoted (repr): whole when short, else `'aaaa…' (100 000
    characters)`."""
    if isinstance(value, str):
        if len(value) <= MAX_SHOWN:
            return repr(value)
        return f"{value[:MAX_SHOWN] + '…'!r} ({_length(len(value))} characters)"
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else f"{text[:MAX_SHOWN]}…"


def ifname_too_long(name: str) -> str | None:
    """Why NAME is too long for an interface name (more than 15 bytes of UTF-8), or None."""
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    if size > MAX_IFNAME_BYTES:
        return f"is longer than {MAX_IFNAME_BYTES} bytes"
    return None


def ifname_problem(name: str) -> str | None:
    """Why NAME cannot be an interface name (a bridge, port or peer), or None. The kernel's rule
    (dev_valid_name): 1..15 bytes of UTF-8, no '/', ':' or white space (also as a byte of a
    UTF-8 character), not '.' or '..'; control characters are refused too."""
    if not name:
        return "must not be empty"
    why = ifname_too_long(name)
    if why is not None:
        return why
    if name in (".", ".."):
        return "is not a valid interface name"
    for ch in name:
        if ch == "/" or ch == ":" or ch.isspace() or not ch.isprintable():
            return f"must not contain {ch!r}"
        if ch > "\x7f" and not _KERNEL_SPACES.isdisjoint(ch.encode()):
            return (f"must not contain {ch!r}: the kernel takes its UTF-8 byte 0xa0 for white "
                    "space")
    return None
