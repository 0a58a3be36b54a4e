"""`make images`: builds the three CPU images from apps/*/Dockerfile with podman and
smoke-runs each against a private local stack that it starts and stops itself.

What it needs and does, in order (every step fails `make images`, and so `make test`):

- podman, buildah, runc and mmdebstrap from Debian (scripts/install-system-deps.sh
  installs them; no Docker engine). podman runs with the containers.conf this module
  writes under .local/images/ and passes as CONTAINERS_CONF, not the machine's own:
  runc (crun cannot set up containers on a cgroup v1 host like CI's) and ulimits no
  higher than the host allows (podman's defaults are, and runc then refuses to start).
- A stand-in for python:3.11-slim when the machine has none: Debian bookworm's Python
  (3.11.2, where the official image carries the newest 3.11; close enough for a smoke
  test) in a venv on PATH, built by mmdebstrap, imported and tagged with that name.
- The builds, with --format docker (the OCI format drops HEALTHCHECK), host
  networking, the host's CA bundle and pip configuration mounted read-only (outbound
  TLS may need the host's CA; local wheelhouses and index mirrors make the build
  faster and work where PyPI alone cannot supply a CPU torch), and two build args:
  TORCH_INDEX_URL, because PyTorch's own index may be unreachable and PyPI's Linux
  torch is the CUDA build, so the CPU build comes from a local wheelhouse where there
  is one and from PyTorch's index where it answers (build.torch_index); and
  RDS_CA_BUNDLE_URL, served from loopback (a stand-in: the host's CA bundle), because
  the remote ADD of AWS's bundle fails offline. emu's base-cpu stage is built and
  tagged first: buildah 1.28 cannot resolve `FROM base-${EMU_VARIANT}` to a stage.
- The smoke runs, all with host networking against Postgres, moto and the index
  server on free loopback ports: pelican migrates, loads a small catalog and fits
  the keyword statistics, then runs as the service; emu passes `check` and, running,
  indexes every loaded row and then an edit; the frontend's /healthz answers 200 and
  a search for a loaded product's name returns it.
- One line per image: "smoke ok", its size and its build time. An image larger than
  its size limit (IMAGES) fails the run.

The CUDA variant of emu is not built: its base image (nvidia/cuda) comes from a
registry this machine cannot reach. tests/unit/devstack/test_images.py checks its stage.

Modules: :mod:`.dockerfile` (reads the Dockerfiles), :mod:`.podman` (podman's
configuration and the stand-in base image), :mod:`.build` (what the builds may use
from the host, and the builds), :mod:`.smoke` (the smoke runs) and ``__main__`` (the
command line).
"""

from __future__ import annotations

from dataclasses import dataclass

from devstack.processes import REPO

WORK = REPO / ".local" / "images"
TAG = "smoke"


@dataclass(frozen=True)
class Image:
    """One app's image: its Dockerfile under apps/, the stage built and tagged first
    (buildah 1.28's workaround for a FROM naming a stage through an ARG) and the size
    it must stay under, in bytes (the sizes the images had when this check began)."""

    name: str
    dockerfile: str
    size_limit: int
    pre_target: str | None = None

    @property
    def tag(self) -> str:
        return f"localhost/productsearch-{self.name}:{TAG}"


IMAGES = (
    Image("pelican", "apps/pelican/Dockerfile", 401_000_000),
    Image("emu", "apps/emu/Dockerfile", 1_970_000_000, pre_target="base-cpu"),
    Image("frontend", "apps/frontend/Dockerfile", 2_170_000_000),
)


class ImagesError(RuntimeError):
    """A build or a smoke check failed; the message says which and shows the log's tail."""

