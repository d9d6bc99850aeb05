"""Writes vswctl's launcher (`make setup`): `python -m vswctl.launcher PATH`.

pip's console script starts Python with its site module, whose .pth files (the editable
install's import hook among them) take ~25 ms, half of a `vswctl status`. The launcher starts
`python -S` and puts on sys.path what site would have: this checkout's clients/ (where the
editable install maps vswctl and vswapi) and the venv's site directories (the system's too, for
a venv with system site packages).
"""

from __future__ import annotations

import os
import site
import sys

TEMPLATE = """#!{python} -S
# vswctl, written by `make setup` (clients/vswctl/launcher.py): Python without its site module
import sys
sys.path[1:1] = {paths!r}
from vswctl.main import main
sys.exit(main())
"""


def launcher() -> str:
    clients = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [clients] + [d for d in site.getsitepackages() if os.path.isdir(d)]
    return TEMPLATE.format(python=sys.executable, paths=paths)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vswctl.launcher PATH", file=sys.stderr)
        return 1
    tmp = argv[0] + ".tmp"
    with open(tmp, "w") as f:
        f.write(launcher())
    os.chmod(tmp, 0o755)
    os.replace(tmp, argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
