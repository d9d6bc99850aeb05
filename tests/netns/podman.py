"""A root podman of the test's own: its storage, run and config folders in the test's
directory, the CNI network backend with the test's network configurations and vswitchd-cni,
and a tiny image built from Debian's busybox-static (no registry).

What these machines lack and how podman is set up around it:
- cgroups are in hybrid mode (v1 controllers plus a v2 hierarchy holding hugetlb): crun
  refuses that ("cgroups in hybrid mode not supported"), runc accepts it with the cgroupfs
  manager;
- the sandbox may not set RLIMIT_NOFILE / RLIMIT_NPROC to podman's defaults (nor to the
  host's own values: "--ulimit host" fails too): the containers get 1024 of each, which the
  tests' containers need far less than;
- overlayfs is not assumed: the vfs storage driver.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
from pathlib import Path

PODMAN = "/usr/bin/podman"
BUSYBOX = "/bin/busybox"  # busybox-static: the image's only binary
IMAGE = "localhost/vsw-busybox:test"
APPLETS = ("sh", "ping", "ip", "sleep", "cat", "ifconfig", "hostname")


class Podman:
    def __init__(self, workdir: Path, plugin_dir: Path, net_dir: Path) -> None:
        self.dir = workdir
        for sub in ("root", "runroot", "tmp"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        ulimits = [f'"{name}={min(hard, 1024)}:{min(hard, 1024)}"'
                   for name, (_soft, hard) in (
                       ("nofile", resource.getrlimit(resource.RLIMIT_NOFILE)),
                       ("nproc", resource.getrlimit(resource.RLIMIT_NPROC)))]
        (workdir / "containers.conf").write_text(f"""\
[containers]
default_ulimits = [{", ".join(ulimits)}]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{workdir}/events.log"
tmp_dir = "{workdir}/tmp"
[network]
network_backend = "cni"
cni_plugin_dirs = ["{plugin_dir}", "/usr/lib/cni"]
network_config_dir = "{net_dir}"
""")
        (workdir / "storage.conf").write_text(f"""\
[storage]
driver = "vfs"
graphroot = "{workdir}/root"
runroot = "{workdir}/runroot"
""")
        self.env = {**os.environ, "CONTAINERS_CONF": str(workdir / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(workdir / "storage.conf")}

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([PODMAN, *args], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {res.returncode}\n"
                                 f"{res.stdout}{res.stderr}")
        return res

    def import_busybox(self) -> str:
        """IMAGE: /bin/busybox and its applets' links, imported from a tar the test makes."""
        tar_path = self.dir / "busybox.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(BUSYBOX, arcname="bin/busybox")
            for applet in APPLETS:
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        self("import", "--change", 'CMD ["/bin/sh"]', str(tar_path), IMAGE)
        return IMAGE

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def cleanup(self) -> None:
        """Every container of this podman gone (their networks torn down by the plugin), then
        its folders (vfs storage holds plain files)."""
        if (self.dir / "containers.conf").exists():
            self("rm", "--all", "--force", "--time", "0", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
