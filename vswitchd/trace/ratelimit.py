"""The switch-wide rate limits of what the datapath sends to the daemon, per second per CPU
(bursts of one second's worth): watch events (WATCH) and packet-ins (PACKET_IN). Their range,
where they are stored, the declared value.

The datapath sends at most `rate_limit` of them per second per CPU; the rest are counted as
lost and the streams see `lost N`. The value set over the API (UpdateWatchConfig, `vswctl
set-watch-rate`; UpdatePacketInConfig, `vswctl set-packet-in-rate`) or declared in the
configuration file

    watch:
      rate_limit: 500
    packet_in:
      rate_limit: 100

is kept in the state store (meta store_key), so a restarted daemon gives its datapath the same
limit. A declared value is applied as declared bridges are (vswitchd.desired): only when it
differs from what the file declared when it was last applied (meta applied_key), so a value set
over the API survives a SIGHUP or restart with an unchanged file, and the file wins once its
value changes. A file that declares no rate_limit leaves the running value alone.

The module-level names (STORE_KEY, check, stored, ...) are the watch rate limit's, as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from vswitchd.errors import InvalidArgument, SwitchError
from vswitchd.state import StateError, StateStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateSetting:
    name: str          # for messages: "watch", "packet-in"
    store_key: str     # the desired value (absent: the datapath's default)
    applied_key: str   # what the file declared when last applied ("" none)
    unit: str
    default_name: str  # the datapath's default: the name of its constant in constants.py
    setter: str        # the Switch method that applies a new value
    config_key: str    # in the configuration file

    def limits(self) -> tuple[int, int]:
        """(default, maximum) of the datapath (bpf/lib/watch.h, packet_in.h, and the token
        bucket's u64 in bucket.h)."""
        from vswitchd.datapath import constants
        from vswitchd.datapath.watch import MAX_RATE

        return getattr(constants, self.default_name), MAX_RATE

    def problem(self, value: Any) -> str | None:
        """Why VALUE is not a rate limit (None: it is one)."""
        default, top = self.limits()
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            return f"must be a whole number of {self.unit} in 1..{top} (default {default})"
        return None

    def check(self, value: Any, field: str = "rate_limit") -> int:
        """VALUE if it is a valid rate limit, else InvalidArgument naming it and the range."""
        why = self.problem(value)
        if why:
            raise InvalidArgument(field, value, why)
        return value

    def stored(self, store: StateStore) -> int:
        """The stored rate limit, or the datapath's default; StateError when the record is
        bad."""
        text = store.get_meta(self.store_key)
        if text is None:
            return self.limits()[0]
        try:
            return self.check(int(text))
        except (ValueError, InvalidArgument):
            raise StateError(f"state store {store.path}: the {self.name} rate limit record "
                             f"{text!r} is damaged; it was left in place for inspection"
                             ) from None

    def apply_declared(self, switch: Any, store: StateStore, declared: int | None,
                       where: str) -> None:
        """Apply the file's rate_limit if it changed since the file was last applied."""
        applied = store.get_meta(self.applied_key) or ""
        if declared is None:
            if applied:  # undeclared now: forget it, so declaring the same value again applies
                self._record(store, "")
            return
        if applied == str(declared):
            return
        try:
            getattr(switch, self.setter)(declared)
        except SwitchError as exc:  # left out of the record: the next reload or start retries
            log.error("%s: %s %d not applied: %s", where, self.config_key, declared, exc)
            return
        log.info("config: %s rate limit %d %s", self.name, declared, self.unit)
        self._record(store, str(declared))

    def _record(self, store: StateStore, value: str) -> None:
        try:
            store.set_meta(self.applied_key, value)
        except OSError as exc:
            log.error("the applied %s rate limit was not recorded in %s: %s", self.name,
                      store.path, exc)


WATCH = RateSetting("watch", "watch_rate_limit", "applied_watch_rate_limit",
                    "events per second per CPU", "WATCH_DEFAULT_RATE", "set_watch_rate",
                    "watch.rate_limit")
PACKET_IN = RateSetting("packet-in", "packet_in_rate_limit", "applied_packet_in_rate_limit",
                        "packet-ins per second per CPU", "PACKET_IN_DEFAULT_RATE",
                        "set_packet_in_rate", "packet_in.rate_limit")

# the watch rate limit's, as before
STORE_KEY = WATCH.store_key
APPLIED_KEY = WATCH.applied_key
UNIT = WATCH.unit
limits = WATCH.limits
problem = WATCH.problem
check = WATCH.check
stored = WATCH.stored
apply_declared = WATCH.apply_declared
