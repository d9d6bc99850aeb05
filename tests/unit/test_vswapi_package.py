"""vswapi installs on its own with pip into a fresh virtualenv without the system's packages:
a controller gets the library and the stubs, and neither bcc, pyroute2 nor the daemon."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "vswapi"

CHECK = """
import importlib.util, sys
import vswapi
from vswapi import Switch, Unavailable, pb
assert vswapi.__file__.startswith(sys.prefix), vswapi.__file__
for name in ("bcc", "pyroute2", "vswitchd", "yaml"):
    assert importlib.util.find_spec(name) is None, name
with Switch.connect(socket_path=sys.argv[1], timeout=2) as sw:
    try:
        sw.status()
    except Unavailable as exc:
        print("unavailable:", exc.details[:40])
print(pb.Event(revision=7).revision)
"""


def _runtime(site: Path) -> None:
    """grpcio and protobuf (and what grpcio needs) into SITE, from this venv: the machines have
    no package index online, and pip must not reach one here. Only these: nothing else of the
    daemon's venv comes along."""
    here = Path(grpc.__file__).parents[1]
    for pattern in ("grpc", "google", "typing_extensions.py", "grpcio-*.dist-info",
                    "protobuf-*.dist-info", "typing_extensions-*.dist-info"):
        for path in here.glob(pattern):
            (site / path.name).symlink_to(path)


def test_vswapi_installs_alone_in_a_bare_venv(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(CLIENT, src, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                               "__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    _runtime(site)
    # the wheel, built by this venv's setuptools (the bare venv's has no bdist_wheel)
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("vswapi-*.whl")
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    res = subprocess.run([*pip, "install", "-q", "--no-index", str(wheel)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr  # its requirements are met
    run = subprocess.run([str(venv / "bin" / "python"), "-c", CHECK,
                          str(tmp_path / "no.sock")], capture_output=True, text=True,
                         cwd=tmp_path, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.splitlines() == ["unavailable: failed to connect to all addresses; last",
                                       "7"], run.stdout
