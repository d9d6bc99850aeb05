"""The datapath's sizes that the daemon's config may set (`datapath:` in the YAML file):
how many ports and FDB entries its maps hold. bpf/lib/common.h has the defaults; other values
are defined before it, so each is a build of its own (its own cache entry), and pinned maps of
other sizes are replaced at start (learned entries and counters restart, the daemon re-adds
its ports).

Why not larger by default: port_stats is a per-CPU array, 160 bytes a port on every possible
CPU (4 096 ports: 640 KiB a CPU), and the FDB hash is allocated whole at start (104 bytes an
entry: 6.5 MiB for 65 536). All maps at the defaults: 9.4 MiB on 2 CPUs; 16 384 ports and
131 072 entries: 22.6 MiB."""

from __future__ import annotations

from dataclasses import dataclass, fields

from vswitchd.datapath.constants import MAX_FDB_ENTRIES, MAX_PORTS

# (least, most) of each: room for a bridge or two at least; a port's counter slot is a u16,
# and 0xffff means none
RANGES = {"max_ports": (16, 0xFFFF), "max_fdb_entries": (1024, 1 << 24)}


@dataclass(frozen=True)
class Limits:
    max_ports: int = MAX_PORTS
    max_fdb_entries: int = MAX_FDB_ENTRIES

    def problem(self) -> tuple[str, str] | None:
        """(field, what is wrong with its value) of the first value out of its range, or
        None."""
        for f in fields(self):
            value = getattr(self, f.name)
            least, most = RANGES[f.name]
            if isinstance(value, bool) or not isinstance(value, int) or \
                    not least <= value <= most:
                return f.name, f"is not in {least}..{most}"
        return None

    def defines(self) -> str:
        """The #defines of the values that are not common.h's defaults."""
        defaults = Limits()
        return "".join(f"#define {f.name.upper()} {getattr(self, f.name)}\n" for f in fields(self)
                       if getattr(self, f.name) != getattr(defaults, f.name))
