"""Drop reasons by name: the table (number -> name) is bpf/lib/drop_reasons.h's
`#define DROP_REASONS(X) X(NAME, value, "text") ...`, parsed in constants.py."""

from __future__ import annotations

from vswitchd.datapath.constants import (
    BPF_DIR,  # noqa: F401  (tests import it from here)
    DROP_REASONS,
    LIB_DIR,  # noqa: F401  (tests import it from here)
    parse_define,  # noqa: F401  (tests import it from here)
)


def reason_name(value: int) -> str:
    return DROP_REASONS.get(value, f"unknown-{value}")
