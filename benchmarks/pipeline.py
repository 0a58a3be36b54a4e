"""Drives the real pipeline for the evaluation and the benchmarks: a local stack of
its own (Postgres, moto, the index server on free ports under a temporary folder),
or a running one named by its stack.env file. Only the apps' own commands move data:
rows are written to Postgres, pelican ships the captured changes, emu indexes them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import httpx

from devstack.reset import reset_data
from devstack.stack import DevStack, free_port
from devstack.waiting import wait_until
from productsearch import db
from productsearch.index import ProductIndex
from productsearch.settings import IndexSettings

REPO = Path(__file__).resolve().parents[1]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a stack.env file as a dict (blank lines and # comments skipped)."""
    env = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    return env


def memory_of(pid: int) -> dict[str, int]:
    """Resident memory of a live process and its descendants (emu runs its model in a
    child), in KiB: the sum of each process's peak (VmHWM), an upper bound of the
    tree's peak, and the sum of their current VmRSS."""
    peak = current = 0
    for member in _tree(pid):
        try:
            with open(f"/proc/{member}/status") as handle:
                for line in handle:
                    if line.startswith("VmHWM:"):
                        peak += int(line.split()[1])
                    elif line.startswith("VmRSS:"):
                        current += int(line.split()[1])
        except OSError:
            continue
    return {"peak_rss_kib": peak, "rss_kib": current}


class Pipeline:
    """One stack: `Pipeline.own()` starts a private one, `Pipeline.running(env_file)`
    attaches to `make up`'s. Use as a context manager; an own stack is torn down on exit."""

    def __init__(self, env: dict[str, str], stack=None, root: Path | None = None):
        self.env = env
        self.stack = stack
        self.root = root
        self._conn = None
        self._index = None
        self._log_offsets: dict[str, int] = {}

    # -- construction -------------------------------------------------------------
    @classmethod
    def own(cls, log: Callable[[str], None] = print) -> Pipeline:
        """Starts a private stack (FIFO queues, as deployed) under a temporary folder;
        `log` gets its progress lines."""
        root = Path(tempfile.mkdtemp(prefix="productsearch-bench-"))
        if os.geteuid() == 0:
            os.chmod(root, 0o755)  # PostgreSQL runs as the postgres user when we are root
        # PINECONE_INDEX_API=documents measures the pipeline on a document index.
        stack = DevStack(root=root, pg_port=free_port(), aws_port=free_port(), index_port=free_port(),
                         frontend_port=free_port(), index_api=os.environ.get("PINECONE_INDEX_API", "vectors"))
        log(f"starting a local stack under {root} ({stack.index_api} index API) ...")
        try:
            stack.start_infrastructure()
        except BaseException:
            stack.stop_all()
            raise
        return cls(stack.env(), stack=stack, root=root)

    @classmethod
    def running(cls, env_file: Path) -> Pipeline:
        env = read_env_file(env_file)
        for key in ("DATABASE_URL", "PINECONE_HOST", "PINECONE_API_KEY", "SQS_QUEUE_URL"):
            if key not in env:
                raise SystemExit(f"{env_file} lacks {key}; is it the stack.env that `make up` writes?")
        return cls(env)

    @property
    def is_own(self) -> bool:
        return self.stack is not None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.stack is not None:
            self.stack.stop_all()
            shutil.rmtree(self.root, ignore_errors=True)
            self.stack = None

    # -- handles --------------------------------------------------------------------
    @property
    def conn(self):
        if self._conn is None:
            self._conn = db.connect(self.env["DATABASE_URL"], autocommit=True, application_name="bench")
        return self._conn

    @property
    def index(self):
        if self._index is None:
            self._index = ProductIndex(IndexSettings.from_env(self.env), attempts=3, timeout_s=60)
        return self._index

    def app_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    # -- apps (own stack only) --------------------------------------------------------
    def start_app(self, name: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        assert self.stack is not None, "apps are started only on a stack of our own"
        log = self.stack.log_path(name)
        self._log_offsets[name] = log.stat().st_size if log.exists() else 0  # logs are appended to across starts
        return self.stack.start_app(name, extra_env)

    def stop_app(self, name: str) -> None:
        if self.stack is not None:
            self.stack.stop(name, timeout=60)

    def log_text(self, name: str) -> str:
        """What the app logged since its latest start."""
        path = self.stack.log_path(name) if self.stack else None
        if not path or not path.exists():
            return ""
        with open(path, "rb") as handle:
            handle.seek(self._log_offsets.get(name, 0))
            return handle.read().decode(errors="replace")

    def check_running(self, name: str, context: str = "") -> None:
        """RuntimeError, with the tail of the app's log, when the app `name` started on
        an own stack has exited (`context` says what it exited before); else nothing."""
        proc = self.stack.processes.get(name) if self.stack else None
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}{context}:\n{self.log_text(name)[-3000:]}")

    def wait_for_log(self, name: str, text: str, timeout: float = 180.0) -> None:
        def seen():
            self.check_running(name)
            return text in self.log_text(name)

        wait_until(seen, timeout, 0.2, what=f"{name} to log {text!r}")

    def run_cli(self, argv: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *argv], env=self.app_env(extra_env), cwd=REPO, check=True,
                              capture_output=True, text=True)

    # -- data -------------------------------------------------------------------------
    def reset(self) -> None:
        """Empties the table, the change log, the queues and the index (own stack only)."""
        assert self.stack is not None, "refusing to empty a stack that is not ours"
        reset_data(self.stack)

    def insert_products(self, rows: Iterable[dict], *, capture: bool = True, batch: int = 2000) -> list[int]:
        """Upserts rows by SKU and returns their product ids in order. capture=False writes
        them with the change triggers off (as a pre-existing table a backfill then picks up)."""
        sql = """INSERT INTO products (name, sku, description, price, category)
                 VALUES (%(name)s, %(sku)s, %(description)s, %(price)s, %(category)s)
                 ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, description = EXCLUDED.description,
                     price = EXCLUDED.price, category = EXCLUDED.category
                 RETURNING id"""
        ids: list[int] = []
        rows = list(rows)
        conn = self.conn
        if not capture:
            conn.execute("SET session_replication_role = replica")
        try:
            for start in range(0, len(rows), batch):
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(sql, rows[start : start + batch], returning=True)
                    while True:
                        ids.append(cur.fetchone()["id"])
                        if not cur.nextset():
                            break
        finally:
            if not capture:
                conn.execute("SET session_replication_role = DEFAULT")
        return ids

    def refit_lexical(self) -> str:
        """Runs `pelican refit-lexical` (the keyword-search statistics from the table as
        it is now); returns its report line."""
        return self.run_cli(["-m", "pelican", "refit-lexical"]).stdout.strip()

    def capture(self, ids: list[int], chunk: int = 1000) -> None:
        """Captures the given products as changes, as a backfill does for every row, so
        the running pelican ships them (rows inserted with capture=False)."""
        for start in range(0, len(ids), chunk):
            with self.conn.transaction():
                self.conn.execute("INSERT INTO product_changes (product_id, operation) "
                                  "SELECT unnest(%s::bigint[]), 'backfill'", (ids[start : start + chunk],))
                self.conn.execute("SELECT pg_notify('product_changes', '')")

    def wait_count(self, target: int, timeout: float, interval: float = 0.25,
                   progress: Callable[[int], None] | None = None) -> float:
        """Waits until the index's main namespace holds `target` vectors; returns the
        monotonic time at which that was first seen."""
        deadline = time.monotonic() + timeout
        last_report = 0.0
        while True:
            n = self.index.count()
            now = time.monotonic()
            if n >= target:
                return now
            if progress and now - last_report > 10:
                progress(n)
                last_report = now
            if now > deadline:
                raise TimeoutError(f"the index holds {n} of {target} vectors after {timeout:.0f}s")
            time.sleep(interval)

    def missing_ids(self, ids: list[int]) -> list[int]:
        """The product ids that have no vector in the index (fetched in chunks)."""
        present = self.index.fetch_versions([str(i) for i in ids])
        return [i for i in ids if str(i) not in present]

    def wait_ids(self, ids: list[int], timeout: float, progress: Callable[[int], None] | None = None) -> None:
        """Waits until every id has a vector, fetching only those still missing, less
        often while many are (a fetch carries vectors and metadata)."""
        deadline = time.monotonic() + timeout
        remaining = list(ids)
        while remaining:
            remaining = self.missing_ids(remaining)
            if not remaining:
                return
            if progress:
                progress(len(ids) - len(remaining))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(remaining)} of {len(ids)} rows are still not indexed after {timeout:.0f}s")
            time.sleep(min(10.0, 1.0 + len(remaining) / 1000))


_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds of the process and of its exited, waited-for children)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # fields[0] is stat field 3 (state): ppid is field 4, utime..cstime fields 14-17.
        table[int(entry)] = (int(fields[1]), sum(int(x) for x in fields[11:15]) / _TICKS)
    return table


def _tree(root_pid: int, table: dict[int, tuple[int, float]] | None = None) -> list[int]:
    """A live process and all its descendants (Postgres's backends call setsid, so a
    session does not hold them; the process tree does)."""
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    members, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        if pid in table:
            members.append(pid)
            todo.extend(children.get(pid, []))
    return members


def tree_cpu_seconds(root_pid: int, table: dict[int, tuple[int, float]] | None = None) -> float:
    """CPU time of a process and all its descendants, live or exited."""
    table = table if table is not None else _proc_table()
    return sum(table[pid][1] for pid in _tree(root_pid, table))


def cpu_by_part(pipeline: Pipeline) -> dict[str, float]:
    """CPU seconds used so far by each part of an own stack (and by this process)."""
    table = _proc_table()
    out = {name: tree_cpu_seconds(proc.pid, table) for name, proc in (pipeline.stack.processes.items() if pipeline.stack else [])}
    times = os.times()  # children: commands it ran and waited for (pelican backfill), not the running apps
    out["benchmark + backfill command"] = times.user + times.system + times.children_user + times.children_system
    return out


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy since boot (from /proc/stat), to tell
    how much of a phase's CPU went to processes that are not part of the measurement."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / _TICKS


def healthy(url: str) -> bool:
    """Whether the frontend at `url` answers GET /healthz with 200 (its model loaded)."""
    try:
        return httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
