"""Every header of bpf/lib compiles on its own, after only the includes it has, with and without
the watch stage (VSW_NO_TRACE): headers include what they use, so datapath.c (and a later
program) can include them in any order. The quoted lib/ includes are inlined the way the
loader's source_body() does it: recursively, each header once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from vswitchd.datapath.build import inline_includes
from vswitchd.datapath.drop_reasons import LIB_DIR

pytestmark = pytest.mark.root

HEADERS = sorted(path.name for path in LIB_DIR.glob("*.h"))

# In a child process: bcc's rewriter may crash (SIGSEGV) on a header that does not compile.
# -Werror: a function used before its header is included would otherwise only warn.
_COMPILE = """
import sys
from bcc import BPF
BPF(text=sys.stdin.buffer.read(), cflags=["-Werror=implicit-function-declaration"]).cleanup()
"""


def test_there_are_headers():
    assert "common.h" in HEADERS and "parse.h" in HEADERS


@pytest.mark.parametrize("trace", [True, False], ids=["trace", "no-trace"])
@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_alone(header, trace, bpffs_dir):
    os.makedirs(bpffs_dir)  # its pinned maps are created there
    source = (f'#define VSW_PIN_DIR "{bpffs_dir}"\n'
              + ("" if trace else "#define VSW_NO_TRACE\n")
              + inline_includes(f'#include "lib/{header}"\n')
              + "int vsw_header_check(struct __sk_buff *skb) { return 0; }\n")
    try:
        proc = subprocess.run([sys.executable, "-c", _COMPILE], input=source.encode(),
                              capture_output=True, timeout=120)
    finally:
        shutil.rmtree(bpffs_dir, ignore_errors=True)
    errors = [line for line in proc.stderr.decode(errors="replace").splitlines()
              if "error" in line]
    assert proc.returncode == 0, f"lib/{header} alone: exit {proc.returncode}\n" + "\n".join(
        errors[:20])
