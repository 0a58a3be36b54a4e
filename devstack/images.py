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
  torch is the CUDA build, so the CPU build must come from a local wheelhouse; and
  RDS_CA_BUNDLE_URL, served from loopback (a stand-in: the host's CA bundle), because
  the remote ADD of AWS's bundle fails offline. emu's base-cpu stage is built and
  tagged first: buildah 1.28 cannot resolve `FROM base-${EMU_VARIANT}` to a stage.
- The smoke runs, all with host networking against Postgres, moto and the index
  server on free loopback ports: pelican migrates, loads a small catalog and fits
  the keyword statistics, then runs as the service; emu passes `check` and, running,
  indexes every loaded row and then an edit; the frontend's /healthz answers 200 and
  a search for a loaded product's name returns it.
- One line per image: "smoke ok", its size and its build time. An image larger than
  SIZE_LIMITS fails the run.

The CUDA variant of emu is not built: its base image (nvidia/cuda) comes from a
registry this machine cannot reach. tests/unit/devstack/test_images.py checks its stage.
"""

from __future__ import annotations

import argparse
import csv
import functools
import hashlib
import http.server
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg

from devstack.processes import REPO, free_port

WORK = REPO / ".local" / "images"
BASE_IMAGE = "docker.io/library/python:3.11-slim"
# The stand-in base's recipe. Its hash is stored as a label, so a changed recipe
# rebuilds it and an image of that name without the label (the real one, pulled on a
# machine that can) is used as it is.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
BASE_DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
BASE_VENV = "/opt/python"
BASE_LABEL = "org.productsearch.standin-recipe"
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
SIZE_LIMITS = {image.name: image.size_limit for image in IMAGES}
SMOKE_ROWS = 20  # catalog rows the smoke run loads: enough for a search, few for emu on a CPU


class ImagesError(RuntimeError):
    """A build or a smoke check failed; the message says which and shows the log's tail."""


# -- Dockerfiles ------------------------------------------------------------------------
@dataclass
class Stage:
    """One build stage: FROM's image (as written), its name (AS ...; None if unnamed)
    and its instructions after FROM as (KEYWORD, arguments) with continuations joined."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]]

    def args(self) -> dict[str, str | None]:
        """The stage's ARG names and defaults (None: no default)."""
        out: dict[str, str | None] = {}
        for keyword, rest in self.instructions:
            if keyword == "ARG":
                key, _, default = rest.partition("=")
                out[key.strip()] = default.strip() if "=" in rest else None
        return out

    def env(self) -> dict[str, str]:
        """The stage's ENV settings in the KEY=value form (the only form our Dockerfiles use)."""
        out = {}
        for keyword, rest in self.instructions:
            if keyword == "ENV":
                for pair in re.findall(r"(\w+)=(\S+)", rest):
                    out[pair[0]] = pair[1]
        return out

    def runs(self) -> list[str]:
        return [rest for keyword, rest in self.instructions if keyword == "RUN"]


def dockerfile_stages(text: str) -> tuple[dict[str, str | None], list[Stage]]:
    """Parses a Dockerfile's lines into its global ARGs (before the first FROM) and its
    stages. Comments and blank lines are dropped; a line ending in a backslash
    continues on the next. ValueError on an instruction before any FROM other than
    ARG, or a FROM without an image."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    if pending:
        logical.append(pending)
    global_args: dict[str, str | None] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", rest, re.IGNORECASE)
            if not m:
                raise ValueError(f"FROM without an image: {line!r}")
            stages.append(Stage(m.group(1), m.group(2), []))
        elif not stages:
            if keyword != "ARG":
                raise ValueError(f"{keyword} before the first FROM: {line!r}")
            key, _, default = rest.partition("=")
            global_args[key] = default if "=" in rest else None
        else:
            stages[-1].instructions.append((keyword, rest))
    return global_args, stages


# -- podman -----------------------------------------------------------------------------
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


class Podman:
    """podman with this module's containers.conf; every call logs to `log_dir`."""

    def __init__(self, work: Path):
        for tool in ("podman", "buildah", "runc", "mmdebstrap"):
            if shutil.which(tool) is None:
                raise ImagesError(f"{tool} is not installed: run `make deps` (scripts/install-system-deps.sh installs it)")
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
                done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, timeout=timeout)
            text = path.read_text()
        else:
            done = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=timeout)
            text = done.stdout + done.stderr
        if check and done.returncode != 0:
            tail = "\n".join(text.strip().splitlines()[-25:])
            raise ImagesError(f"podman {' '.join(args[:2])} failed (exit {done.returncode}):\n{tail}")
        return done.stdout if not log else text

    def exists(self, ref: str) -> bool:
        return subprocess.run(["podman", "image", "exists", ref], env=self.env).returncode == 0

    def inspect(self, ref: str, fmt: str) -> str:
        return self.run(["image", "inspect", "--format", fmt, ref]).strip()


# -- the base image ---------------------------------------------------------------------
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


# -- what the builds may use from the host ----------------------------------------------
def pip_sources(config_lines: Sequence[str], environ: dict[str, str]) -> tuple[list[Path], list[Path]]:
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
    def log_message(self, *args) -> None:
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


def build_inputs(work: Path, rds_ca_url: str, environ: dict[str, str] = os.environ) -> BuildInputs:
    """The host's CA bundle, a pip.conf naming it and the host's local wheelhouses and
    mirrors, and the two build args. TORCH_INDEX_URL from the environment wins (a
    machine that reaches PyTorch's index); otherwise PyPI, with torch's CPU build from
    a local wheelhouse, or ImagesError when there is none."""
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
    torch_index = environ.get("TORCH_INDEX_URL")
    if not torch_index:
        version = pinned_torch()
        if not has_cpu_torch(links, indexes, version):
            raise ImagesError(
                f"no CPU build of torch {version} is reachable: PyPI's Linux torch is the CUDA build (several GB of "
                "nvidia-* wheels), and no local wheelhouse in pip's configuration holds "
                f"torch-{version}+cpu-cp311-...whl. Set TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu where "
                "that index can be reached.")
        torch_index = "https://pypi.org/simple"
    return BuildInputs(volumes, {"TORCH_INDEX_URL": torch_index, "RDS_CA_BUNDLE_URL": rds_ca_url})


def build(podman: Podman, image: Image, inputs: BuildInputs) -> float:
    """Builds `image` (and its pre-target first); returns the wall time in seconds."""
    started = time.monotonic()
    common = ["build", "--format", "docker", "--network", "host", "--pull-never", "-f", image.dockerfile, *inputs.argv()]
    if image.pre_target:
        podman.run([*common, "--target", image.pre_target, "-t", image.pre_target, "apps"],
                   log=f"{image.name}-{image.pre_target}-build.log", timeout=1800)
    podman.run([*common, "-t", image.tag, "apps"], log=f"{image.name}-build.log", timeout=1800)
    return time.monotonic() - started


# -- the smoke runs ----------------------------------------------------------------------
def small_catalog(source: Path, target: Path, rows: int) -> list[dict[str, str]]:
    """The first `rows` records of the sample catalog (CSV, header kept) into target."""
    with open(source, newline="") as handle:
        reader = csv.DictReader(handle)
        records = [row for _, row in zip(range(rows), reader)]
        fields = reader.fieldnames
    with open(target, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(records)
    return records


class Smoke:
    """The three images run against one private stack under `work`/stack."""

    def __init__(self, podman: Podman, work: Path):
        from devstack.stack import DevStack  # heavy: boto3; only the smoke run needs it

        self.podman = podman
        self.work = work
        shutil.rmtree(work / "stack", ignore_errors=True)
        self.stack = DevStack(root=work / "stack", pg_port=free_port(), aws_port=free_port(),
                              index_port=free_port(), frontend_port=free_port())
        self.env_file = work / "smoke.env"
        self.containers: list[str] = []

    def start(self) -> None:
        self.stack.root.mkdir(parents=True, exist_ok=True)
        self.stack.start_postgres()
        self.stack.start_aws()
        self.stack.start_index()
        env = {**self.stack.env(), "LOG_FORMAT": "json",
               # loopback only: with host networking the default 0.0.0.0 would face the network
               "FRONTEND_HOST": "127.0.0.1",
               "EDITOR_USERNAME": "editor", "EDITOR_PASSWORD": "smoke-" + os.urandom(8).hex()}
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))

    def stop(self) -> None:
        for name in self.containers:
            self.podman.run(["logs", name], log=f"{name.rsplit('-', 1)[0]}.log", check=False)
            self.podman.run(["rm", "-f", "-t", "10", name], check=False)
        self.stack.stop_all()

    def _run(self, image: Image, *args: str, volumes: Sequence[str] = (), log: str) -> str:
        vol = [x for v in volumes for x in ("-v", v)]
        return self.podman.run(["run", "--rm", "--network", "host", "--env-file", str(self.env_file), *vol,
                                image.tag, *args], log=log, timeout=600)

    def _detach(self, image: Image) -> str:
        name = f"productsearch-smoke-{image.name}-{os.getpid()}"
        self.podman.run(["rm", "-f", name], check=False)
        self.podman.run(["run", "-d", "--name", name, "--network", "host", "--env-file", str(self.env_file), image.tag])
        self.containers.append(name)
        return name

    def _logs(self, name: str) -> str:
        return "\n".join(self.podman.run(["logs", name], check=False).strip().splitlines()[-25:])

    def _wait(self, what: str, check, container: str, timeout: float) -> None:
        """Polls `check` (an exception counts as not yet) every half second until true;
        ImagesError with the container's log when it stops running or after `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.podman.run(["container", "inspect", "--format", "{{.State.Running}}", container], check=False)
            if running.strip() != "true":
                raise ImagesError(f"{container} stopped while waiting for {what}:\n{self._logs(container)}")
            try:
                if check():
                    return
            except Exception:  # not answering yet: the same as not ready
                pass
            if time.monotonic() > deadline:
                raise ImagesError(f"{what}: not done within {timeout:.0f}s\n{container}'s log:\n{self._logs(container)}")
            time.sleep(0.5)

    def _sql(self, query: str, params: tuple = ()):
        with psycopg.connect(self.stack.database_url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def pelican(self, image: Image) -> None:
        """migrate, load-catalog (SMOKE_ROWS rows), refit-lexical, then the service."""
        catalog = self.work / "smoke-catalog.csv"
        self.records = small_catalog(REPO / "apps" / "pelican" / "catalog" / "products.csv", catalog, SMOKE_ROWS)
        self._run(image, "migrate", log="pelican-migrate.log")
        self._run(image, "load-catalog", "/smoke/products.csv", volumes=[f"{catalog}:/smoke/products.csv:ro"],
                  log="pelican-load-catalog.log")
        loaded = self._sql("SELECT count(*) FROM products")[0][0]
        if loaded != SMOKE_ROWS:
            raise ImagesError(f"pelican load-catalog left {loaded} rows in the table, not {SMOKE_ROWS}")
        self._run(image, "refit-lexical", log="pelican-refit-lexical.log")
        self.pelican_container = self._detach(image)

    def emu(self, image: Image) -> None:
        """`check`, then the service: every loaded row in the index, then an edit."""
        self._run(image, "check", log="emu-check.log")
        name = self._detach(image)
        from productsearch.documents import indexed_text, text_hash
        from productsearch.index import ProductIndex
        from productsearch.settings import DEFAULT_TEXT_TEMPLATE, IndexSettings

        index = ProductIndex(IndexSettings.from_env(self.stack.env()), attempts=3)
        self._wait("emu indexing the loaded catalog", lambda: index.count() == SMOKE_ROWS, name, timeout=600)
        product_id, product_name = self._sql("SELECT id, name FROM products ORDER BY id LIMIT 1")[0]
        description = "Edited by the image smoke run: a description no catalog row has."
        self._sql("UPDATE products SET description = %s WHERE id = %s", (description, product_id))
        want = text_hash(indexed_text({"name": product_name, "description": description}, DEFAULT_TEXT_TEMPLATE))

        def edited() -> bool:
            record = index.fetch([str(product_id)]).get(str(product_id))
            return record is not None and (record.metadata or {}).get("text_hash") == want
        self._wait("emu indexing an edit", edited, name, timeout=300)

    def frontend(self, image: Image) -> None:
        """/healthz 200, a search for a loaded product's name finds it, and the image
        keeps its HEALTHCHECK."""
        if self.podman.inspect(image.tag, "{{.Config.Healthcheck}}") in ("", "<nil>", "<no value>"):
            raise ImagesError("the frontend image has no HEALTHCHECK (built without --format docker?)")
        # It serves the build stage's ONNX export; torch stays in that stage.
        found = self.podman.run(["run", "--rm", "--entrypoint", "python", image.tag, "-c",
                                 "import importlib.util; print(importlib.util.find_spec('torch') is not None)"])
        if found.strip() != "False":
            raise ImagesError("the frontend image carries torch; its export stage alone should")
        name = self._detach(image)
        base = f"http://127.0.0.1:{self.stack.frontend_port}"

        def healthy() -> bool:
            with urllib.request.urlopen(f"{base}/healthz", timeout=5) as response:
                return response.status == 200
        self._wait("the frontend's /healthz", healthy, name, timeout=420)
        target = self.records[0]["name"] if self.records else ""
        wanted = self._sql("SELECT id FROM products WHERE name = %s", (target,))
        request = urllib.request.Request(f"{base}/api/search", data=json.dumps({"query": target, "top_k": 5}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                results = json.load(response)["results"]
        except (urllib.error.URLError, ValueError, KeyError) as exc:
            raise ImagesError(f"the frontend's search failed: {exc}\n{self._logs(name)}") from None
        ids = {int(r["id"]) for r in results}
        if not results or not ids & {row[0] for row in wanted}:
            raise ImagesError(f"a search for {target!r} returned {results!r}, not the product of that name")


def human_size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.images`` (make images). Exit code 1 with the reason when a
    build, a smoke check or a size limit fails."""
    parser = argparse.ArgumentParser(prog="devstack.images", description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=WORK, help="state, logs and podman's configuration (default .local/images)")
    args = parser.parse_args(argv)
    # A stopped run (CI's timeout, Ctrl-C) still stops its stack and containers: the finally blocks run.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        podman = Podman(args.work)
        print(ensure_base(podman, args.work), flush=True)
        stand_in = args.work / "rds-ca"
        stand_in.mkdir(exist_ok=True)
        shutil.copyfile(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt", stand_in / "global-bundle.pem")
        server = StandInServer(stand_in)
        try:
            inputs = build_inputs(args.work, server.url("global-bundle.pem"))
            times = {}
            for image in IMAGES:
                print(f"building {image.name} ...", flush=True)
                times[image.name] = build(podman, image, inputs)
        finally:
            server.close()
        smoke = Smoke(podman, args.work)
        try:
            smoke.start()
            for image in IMAGES:
                getattr(smoke, image.name)(image)
        finally:
            smoke.stop()
        failures = []
        for image in IMAGES:
            size = int(podman.inspect(image.tag, "{{.Size}}"))
            print(f"{image.name:9} smoke ok  {human_size(size):>8}  built in {times[image.name] / 60:.1f} min", flush=True)
            if size > image.size_limit:
                failures.append(f"{image.name} is {human_size(size)}, over its limit of {human_size(image.size_limit)}")
        if failures:
            raise ImagesError("; ".join(failures))
        # Untagged images are earlier builds' layers; a day's worth stays as build cache.
        podman.run(["image", "prune", "-f", "--filter", "until=24h"], check=False)
    except (ImagesError, subprocess.TimeoutExpired, RuntimeError, OSError, psycopg.Error) as exc:
        print(f"make images failed: {exc}", file=sys.stderr)
        return 1
    print(f"images built and smoke-tested in {(time.monotonic() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
