"""The smoke runs: the three images against one private local stack (Postgres, moto,
the index server on free loopback ports), with host networking."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import LiteralString

import psycopg

from devstack.images import Image, ImagesError
from devstack.images.podman import Podman
from devstack.processes import REPO, free_port

SMOKE_ROWS = 20  # catalog rows the smoke run loads: enough for a search, few for emu on a CPU


def small_catalog(source: Path, target: Path, rows: int) -> list[dict[str, str]]:
    """The first `rows` records of the sample catalog (CSV, header kept) into target."""
    with open(source, newline="") as handle:
        reader = csv.DictReader(handle)
        records = [row for _, row in zip(range(rows), reader)]
        fields = reader.fieldnames or []
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

    def _sql(self, query: LiteralString, params: tuple = ()):
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

