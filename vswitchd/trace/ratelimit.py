"""The switch-wide watch event rate limit: its range, where it is stored, the declared value.

The datapath emits at most `rate_limit` watch events per second per CPU (bursts of one second's
worth); the events over it are counted as lost and watchers see `lost N`. The value set over
the API (UpdateWatchConfig, `vswctl set-watch-rate`) or declared in the configuration file

    watch:
      rate_limit: 500

is kept in the state store (meta STORE_KEY), so a restarted daemon gives its datapath the same
limit. A declared value is applied as declared bridges are (vswitchd.desired): only when it
differs from what the file declared when it was last applied (meta APPLIED_KEY), so a value set
over the API survives a SIGHUP or restart with an unchanged file, and the file wins once its
value changes. A file that declares no rate_limit leaves the running value alone.
"""

from __future__ import annotations

import logging
from typing import Any

from vswitchd.errors import InvalidArgument, SwitchError
from vswitchd.state import StateError, StateStore

log = logging.getLogger(__name__)

STORE_KEY = "watch_rate_limit"            # the desired value (absent: the datapath's default)
APPLIED_KEY = "applied_watch_rate_limit"  # what the file declared when last applied ("" none)
UNIT = "events per second per CPU"


def limits() -> tuple[int, int]:
    """(default, maximum) of the datapath (bpf/lib/watch.h, the token bucket's u64)."""
    from vswitchd.datapath.watch import MAX_RATE, WATCH_DEFAULT_RATE

    return WATCH_DEFAULT_RATE, MAX_RATE


def problem(value: Any) -> str | None:
    """Why VALUE is not a rate limit (None: it is one)."""
    default, top = limits()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
        return f"must be a whole number of {UNIT} in 1..{top} (default {default})"
    return None


def check(value: Any, field: str = "rate_limit") -> int:
    """VALUE if it is a valid rate limit, else InvalidArgument naming it and the range."""
    why = problem(value)
    if why:
        raise InvalidArgument(field, value, why)
    return value


def stored(store: StateStore) -> int:
    """The stored rate limit, or the datapath's default; StateError when the record is bad."""
    text = store.get_meta(STORE_KEY)
    if text is None:
        return limits()[0]
    try:
        return check(int(text))
    except (ValueError, InvalidArgument):
        raise StateError(f"state store {store.path}: the watch rate limit record {text!r} is "
                         "damaged; it was left in place for inspection") from None


def apply_declared(switch: Any, store: StateStore, declared: int | None, where: str) -> None:
    """Apply the file's rate_limit if it changed since the file was last applied."""
    applied = store.get_meta(APPLIED_KEY) or ""
    if declared is None:
        if applied:  # undeclared now: forget it, so declaring the same value again applies it
            _record(store, "")
        return
    if applied == str(declared):
        return
    try:
        switch.set_watch_rate(declared)
    except SwitchError as exc:  # left out of the record: the next reload or start retries it
        log.error("%s: watch.rate_limit %d not applied: %s", where, declared, exc)
        return
    log.info("config: watch rate limit %d %s", declared, UNIT)
    _record(store, str(declared))


def _record(store: StateStore, value: str) -> None:
    try:
        store.set_meta(APPLIED_KEY, value)
    except OSError as exc:
        log.error("the applied watch rate limit was not recorded in %s: %s", store.path, exc)
