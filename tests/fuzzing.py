"""How much the property-based tests run (hypothesis), from one place.

`make test` (CI) runs each property test on a bounded number of examples with a fixed seed
(derandomize): the same cases on every run, so a CI failure reproduces. `make fuzz` sets
VSWITCHD_FUZZ=1: a random seed and FUZZ_FACTOR times the examples, and the failures hypothesis
finds are kept in .hypothesis/ and tried first on the next run. A test states its CI budget with
`@budget(N)`; what a failure prints (the shrunk case) is the test's own message.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

FUZZING = os.environ.get("VSWITCHD_FUZZ", "") not in ("", "0")
FUZZ_FACTOR = int(os.environ.get("VSWITCHD_FUZZ_FACTOR", "50"))


def budget(ci_examples: int, **overrides: object) -> settings:
    """Settings for a property test that runs CI_EXAMPLES examples in CI."""
    common: dict = {
        "deadline": None,  # real programs and a real daemon: time per example varies with load
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                                  HealthCheck.function_scoped_fixture],
        "print_blob": True,
    }
    if FUZZING:
        common.update(max_examples=ci_examples * FUZZ_FACTOR, derandomize=False)
    else:
        common.update(max_examples=ci_examples, derandomize=True, database=None)
    common.update(overrides)
    return settings(**common)
