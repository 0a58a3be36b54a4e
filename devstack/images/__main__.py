"""``python -m devstack.images`` (make images): build the three images, smoke-run
them, check their sizes (see :mod:`devstack.images`)."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg

from devstack.images import IMAGES, WORK, Image, ImagesError
from devstack.images.build import StandInServer, build, build_inputs
from devstack.images.podman import Podman, ensure_base
from devstack.images.smoke import Smoke


def human_size(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def summary(images: Sequence[Image], sizes: Mapping[str, int], times: Mapping[str, float]) -> tuple[list[str], list[str]]:
    """The line printed per smoke-tested image (name, "smoke ok", size, build time in
    minutes) and one failure per image over its size_limit. `sizes` in bytes and
    `times` in seconds, by image name."""
    lines, failures = [], []
    for image in images:
        size = sizes[image.name]
        lines.append(f"{image.name:9} smoke ok  {human_size(size):>8}  built in {times[image.name] / 60:.1f} min")
        if size > image.size_limit:
            failures.append(f"{image.name} is {human_size(size)}, over its limit of {human_size(image.size_limit)}")
    return lines, failures


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.images`` (make images). Exit code 1 with the reason when a
    build, a smoke check or a size limit fails."""
    parser = argparse.ArgumentParser(prog="devstack.images", description="Builds the three CPU images with podman and smoke-runs each against a private local stack.")
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
        sizes = {image.name: int(podman.inspect(image.tag, "{{.Size}}")) for image in IMAGES}
        lines, failures = summary(IMAGES, sizes, times)
        print("\n".join(lines), flush=True)
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
