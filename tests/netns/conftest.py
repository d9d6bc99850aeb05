from __future__ import annotations

import pytest

from tests.netns.harness import Host


@pytest.fixture
def host(tmp_path, request):
    h = Host(tmp_path)
    try:
        yield h
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"---- vswitchd log ({h.tag}) ----\n{h.log()}")
        h.cleanup()
