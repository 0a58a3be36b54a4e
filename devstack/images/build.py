"""What every image build is given from the host (CA bundle, pip's wheelhouses and
mirrors, the TORCH_INDEX_URL and RDS_CA_BUNDLE_URL build args) and the builds."""

from __future__ import annotations

import functools
import http.client
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.images import Image, ImagesError
from devstack.images.podman import Podman
from devstack.processes import REPO


def pip_sources(config_lines: Sequence[str], environ: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    """Local wheelhouses (find-links) and local index mirrors (file:// index URLs) the
    host's pip is configured with, from `pip config list` lines and PIP_FIND_LINKS /
    PIP_EXTRA_INDEX_URL; only folders that exist. Returns (find_links, index_dirs)."""
    values: dict[str, list[str]] = {"find-links": [], "extra-index-url": []}
    for line in config_lines:
        m = re.fullmatch(r"\s*\w+\.(find-links|extra-index-url)\s*=\s*'?(.*?)'?\s*", line)
        if m:
            values[m.group(1)] += m.group(2).split()
    values["find-links"] += environ.get("PIP_FIND_LINKS", "").split()
    values["extra-index-url"] += environ.get("PIP_EXTRA_INDEX_URL", "").split()
    links = [Path(v.removeprefix("file://")) for v in values["find-links"] if not re.match(r"https?://", v)]
    indexes = [Path(v.removeprefix("file://")) for v in values["extra-index-url"] if v.startswith("file://")]
    dedup = lambda paths: list(dict.fromkeys(p for p in paths if p.is_dir()))  # noqa: E731
    return dedup(links), dedup(indexes)


def pinned_torch() -> str:
    """torch's version in apps/constraints.txt."""
    for line in (REPO / "apps" / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"torch==(\S+)", line.strip())
        if m:
            return m.group(1)
    raise ImagesError("apps/constraints.txt pins no torch version")


def has_cpu_torch(find_links: Sequence[Path], index_dirs: Sequence[Path], version: str) -> bool:
    """Whether a local wheelhouse or index mirror holds PyTorch's CPU build of torch
    `version` for CPython 3.11 on x86-64 (the +cpu local version label)."""
    pattern = re.compile(rf"torch-{re.escape(version)}\+cpu-cp311-cp311-manylinux[^ ]*_x86_64\.whl")
    folders = [*find_links, *(d / "torch" for d in index_dirs)]
    return any(pattern.fullmatch(p.name) for d in folders if d.is_dir() for p in d.iterdir())


class StandInServer:
    """Serves one folder on a free loopback port in a thread (the RDS CA stand-in)."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class BuildInputs:
    """What every build is given: volumes (host:container:ro) and build args."""

    volumes: list[str]
    build_args: dict[str, str]

    def argv(self) -> list[str]:
        out = []
        for volume in self.volumes:
            out += ["-v", volume]
        for key, value in self.build_args.items():
            out += ["--build-arg", f"{key}={value}"]
        return out


# The Dockerfiles' default TORCH_INDEX_URL: PyTorch's index of CPU-only wheels.
PYTORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def index_answers(url: str, project: str = "torch", timeout: float = 10) -> bool:
    """Whether the package index at `url` serves `project`'s page (the simple API,
    PEP 503: <url>/<project>/) with HTTP 200 within `timeout` seconds."""
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/{project}/", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):  # URLError, timeouts and refusals are OSErrors
        return False


def torch_index(links: Sequence[Path], indexes: Sequence[Path], environ: Mapping[str, str],
                pytorch_index: str = PYTORCH_CPU_INDEX) -> str:
    """The TORCH_INDEX_URL build arg: TORCH_INDEX_URL from the environment; else PyPI's
    URL when a local wheelhouse or mirror holds the pinned CPU build of torch (pip takes
    it over PyPI's CUDA build: PEP 440 sorts <version>+cpu above <version>, and both
    satisfy ==<version>); else PyTorch's CPU index when it answers. Raises ImagesError when none of them can supply it."""
    if environ.get("TORCH_INDEX_URL"):
        return environ["TORCH_INDEX_URL"]
    version = pinned_torch()
    if has_cpu_torch(links, indexes, version):
        return "https://pypi.org/simple"
    if index_answers(pytorch_index):
        return pytorch_index
    raise ImagesError(
        f"no CPU build of torch {version} is reachable: {pytorch_index} does not answer, PyPI's Linux torch "
        "is the CUDA build (several GB of nvidia-* wheels), and no local wheelhouse in pip's configuration "
        f"holds torch-{version}+cpu-cp311-...whl. Set TORCH_INDEX_URL to an index that serves it, or add "
        "such a wheelhouse to pip's find-links.")


def build_inputs(work: Path, rds_ca_url: str, environ: Mapping[str, str] = os.environ) -> BuildInputs:
    """The host's CA bundle, a pip.conf naming it and the host's local wheelhouses and
    mirrors, and the two build args (TORCH_INDEX_URL from torch_index, which raises
    ImagesError when no CPU torch can be had)."""
    config = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    links, indexes = pip_sources(config.splitlines(), environ)
    ca = Path(environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    if not ca.is_file():
        raise ImagesError(f"no CA bundle at {ca}: install Debian's ca-certificates")
    conf = ["[global]", "cert = /etc/ssl/certs/host-ca.crt"]
    if links:
        conf.append("find-links = " + " ".join(str(p) for p in links))
    if indexes:
        conf.append("extra-index-url = " + " ".join(f"file://{p}" for p in indexes))
    (work / "pip.conf").write_text("\n".join(conf) + "\n")
    # A mirror's pages link to files beside its simple/ folder (../../files/...): its parent goes in whole.
    mounts = dict.fromkeys([*links, *(p.parent for p in indexes)])
    volumes = [f"{ca}:/etc/ssl/certs/host-ca.crt:ro", f"{work / 'pip.conf'}:/etc/pip.conf:ro",
               *[f"{p}:{p}:ro" for p in mounts]]
    return BuildInputs(volumes, {"TORCH_INDEX_URL": torch_index(links, indexes, environ),
                                 "RDS_CA_BUNDLE_URL": rds_ca_url})


def build(podman: Podman, image: Image, inputs: BuildInputs) -> float:
    """Builds `image` (and its pre-target first); returns the wall time in seconds."""
    started = time.monotonic()
    common = ["build", "--format", "docker", "--network", "host", "--pull-never", "-f", image.dockerfile, *inputs.argv()]
    if image.pre_target:
        podman.run([*common, "--target", image.pre_target, "-t", image.pre_target, "apps"],
                   log=f"{image.name}-{image.pre_target}-build.log", timeout=1800)
    podman.run([*common, "-t", image.tag, "apps"], log=f"{image.name}-build.log", timeout=1800)
    return time.monotonic() - started

