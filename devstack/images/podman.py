"""podman as `make images` runs it (its own containers.conf, a log per call) and the
stand-in for python:3.11-slim, built with mmdebstrap where the machine has none."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from devstack.images import ImagesError

BASE_IMAGE = "docker.io/library/python:3.11-slim"
# The stand-in base's recipe. Its hash is stored as a label, so a changed recipe
# rebuilds it and an image of that name without the label (the real one, pulled on a
# machine that can) is used as it is.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
BASE_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
BASE_VENV = "/opt/python"
BASE_LABEL = "org.productsearch.standin-recipe"


def containers_conf(nofile_hard: int, nproc_hard: int) -> str:
    """The containers.conf podman runs with: runc, cgroupfs, and ulimits no higher than
    the host's hard limits (runc cannot raise them; podman's default nofile is 1048576)."""
    nofile = min(16384, nofile_hard)
    nproc = min(32768, nproc_hard)
    return ("[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            'runtime = "runc"\n'
            'cgroup_manager = "cgroupfs"\n'
            'events_logger = "file"\n')


def _hard(limit: int) -> int:
    hard = resource.getrlimit(limit)[1]
    return 1 << 30 if hard == resource.RLIM_INFINITY else hard


def rootless_problem(euid: int, newuidmap: str | None) -> str | None:
    """Why podman and mmdebstrap cannot run as this user, or None. As root they need
    nothing more; as another user both map the images' user IDs (the apps run as UID
    10001) through newuidmap, from Debian's uidmap, which `make deps` does not install."""
    if euid == 0 or newuidmap:
        return None
    return ("make images builds as root, or rootless with newuidmap, which is missing: run it as root "
            "(sudo make images), install Debian's uidmap (and subordinate IDs for this user in /etc/subuid and "
            "/etc/subgid), or leave the images out with SKIP_IMAGES=1 make test")


class Podman:
    """podman with this module's containers.conf; every call logs to `log_dir`."""

    def __init__(self, work: Path):
        for tool in ("podman", "buildah", "runc", "mmdebstrap"):
            if shutil.which(tool) is None:
                raise ImagesError(f"{tool} is not installed: run `make deps` (scripts/install-system-deps.sh installs it)")
        if (problem := rootless_problem(os.geteuid(), shutil.which("newuidmap"))) is not None:
            raise ImagesError(problem)
        work.mkdir(parents=True, exist_ok=True)
        self.conf = work / "containers.conf"
        self.conf.write_text(containers_conf(_hard(resource.RLIMIT_NOFILE), _hard(resource.RLIMIT_NPROC)))
        self.env = {**os.environ, "CONTAINERS_CONF": str(self.conf)}
        self.log_dir = work / "logs"
        self.log_dir.mkdir(exist_ok=True)

    def run(self, args: Sequence[str], *, log: str | None = None, timeout: float = 600, check: bool = True) -> str:
        """Runs `podman *args`; returns stdout. With `log`, output goes to that file
        instead. Raises ImagesError with the output's tail when it fails."""
        argv = ["podman", *args]
        if log:
            path = self.log_dir / log
            with open(path, "w") as out:
                returncode = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                            timeout=timeout).returncode
            text = stdout = path.read_text()
        else:
            done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
            returncode, stdout, text = done.returncode, done.stdout, done.stdout + done.stderr
        if check and returncode != 0:
            tail = "\n".join(text.strip().splitlines()[-25:])
            raise ImagesError(f"podman {' '.join(args[:2])} failed (exit {returncode}):\n{tail}")
        return stdout

    def exists(self, ref: str) -> bool:
        return subprocess.run(["podman", "image", "exists", ref], env=self.env).returncode == 0

    def inspect(self, ref: str, fmt: str) -> str:
        return self.run(["image", "inspect", "--format", fmt, ref]).strip()



def base_recipe_hash() -> str:
    """Hex digest of everything the stand-in base is made from."""
    recipe = {"suite": "bookworm", "packages": BASE_PACKAGES, "excludes": BASE_DPKG_EXCLUDES, "venv": BASE_VENV}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_base(podman: Podman, work: Path) -> str:
    """python:3.11-slim in podman's storage: an existing one without our label is kept
    (a real one); a stand-in from another recipe is rebuilt. Returns what it did."""
    want = base_recipe_hash()
    if podman.exists(BASE_IMAGE):
        have = podman.inspect(BASE_IMAGE, f'{{{{index .Labels "{BASE_LABEL}"}}}}')
        if have in ("", "<no value>"):
            return "python:3.11-slim found, used as it is"
        if have == want:
            return "python:3.11-slim stand-in (Debian's Python 3.11.2) reused"
    tarball = work / "base.tar"
    argv = ["mmdebstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            *[f"--dpkgopt=path-exclude={p}" for p in BASE_DPKG_EXCLUDES],
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            f'--customize-hook=chroot "$1" python3 -m venv {BASE_VENV}',
            '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*',
            "bookworm", str(tarball)]
    log = podman.log_dir / "base.log"
    with open(log, "w") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=900)
    if done.returncode != 0:
        raise ImagesError(f"mmdebstrap failed (exit {done.returncode}):\n{log.read_text()[-3000:]}")
    # What the official image's config says that matters to our Dockerfiles: python and
    # pip on PATH (here the venv's), a UTF-8 locale.
    podman.run(["import", "--change", f"ENV PATH={BASE_VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "--change", "ENV LANG=C.UTF-8", "--change", f"LABEL {BASE_LABEL}={want}",
                "--change", 'CMD ["python3"]', str(tarball), BASE_IMAGE])
    tarball.unlink()
    return "python:3.11-slim stand-in built from Debian's Python 3.11.2 (mmdebstrap)"

