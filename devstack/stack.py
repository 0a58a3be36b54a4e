"""Starts and stops the local stack: a real PostgreSQL server, moto's server for
SQS/SNS, the Pinecone-compatible index server and the apps, each a background
process with its pid and log under one state directory. `make up` / `make down`
use it, and so do the tests (with their own directory and free ports).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCAL_API_KEY = "local-dev-key"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bindir() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise RuntimeError("PostgreSQL server binaries not found: install Debian's postgresql package (make deps does)")


def _wait_for(what: str, check, timeout: float = 60.0, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s\n{tail}")


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return 200 <= response.status < 500


@dataclass
class LocalStack:
    root: Path
    pg_port: int = 55432
    aws_port: int = 55000
    index_port: int = 55081
    frontend_port: int = 7860
    # FIFO queues, as messaging/ deploys them; False gives standard queues (the
    # benchmark measures what ordering costs by running both).
    fifo: bool = True
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    # -- paths and environment --------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    @property
    def database_url(self) -> str:
        return f"postgresql://products:products-local@127.0.0.1:{self.pg_port}/products?sslmode=disable"

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    def queue_url(self, name: str) -> str:
        return f"{self.aws_endpoint}/123456789012/{name}"

    def _queue_name(self, base: str) -> str:
        return f"{base}.fifo" if self.fifo else base

    def env(self) -> dict[str, str]:
        """What every app and script needs to reach every part (written to stack.env)."""
        return {
            "DATABASE_URL": self.database_url,
            "AWS_ENDPOINT_URL": self.aws_endpoint,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "SQS_QUEUE_URL": self.queue_url(self._queue_name("product-jobs")),
            "SQS_DLQ_URL": self.queue_url(self._queue_name("product-jobs-dlq")),
            "SNS_TOPIC_ARN": f"arn:aws:sns:{REGION}:123456789012:product-dead-letters",
            "PINECONE_HOST": f"http://127.0.0.1:{self.index_port}",
            "PINECONE_API_KEY": LOCAL_API_KEY,
            "PINECONE_INDEX": "products",
            "PINECONE_NAMESPACE": "products",
            "FRONTEND_URL": f"http://127.0.0.1:{self.frontend_port}",
            "FRONTEND_PORT": str(self.frontend_port),
        }

    def app_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.env())
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra or {})
        return env

    def write_env_file(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.env().items()))

    # -- processes --------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None, user: str | None = None) -> subprocess.Popen:
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        self.pid_path(name).parent.mkdir(parents=True, exist_ok=True)
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        log = open(self.log_path(name), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env or self.app_env(),
                                cwd=REPO, start_new_session=True)
        self.processes[name] = proc
        self.pid_path(name).write_text(str(proc.pid))
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        proc = self.processes.pop(name, None)
        pid = proc.pid if proc else None
        if pid is None and self.pid_path(name).exists():
            pid = int(self.pid_path(name).read_text())
        self.pid_path(name).unlink(missing_ok=True)
        if pid is None:
            return None
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return proc.returncode
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return 0
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
        return proc.wait() if proc else -9

    # -- postgres -----------------------------------------------------------------
    def _pg_user(self) -> str | None:
        # PostgreSQL refuses to run as root; CI runs as root.
        return "postgres" if os.geteuid() == 0 else None

    def start_postgres(self) -> None:
        bindir = _pg_bindir()
        user = self._pg_user()
        run_dir = self.root / "pgrun"
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(parents=True, exist_ok=True)
            run_dir.mkdir(parents=True, exist_ok=True)
            pwfile = self.root / "pgpass.tmp"
            pwfile.write_text("products-local\n")
            if user:
                shutil.chown(self.pgdata, user)
                shutil.chown(run_dir, user)
                shutil.chown(pwfile, user)
            cmd = [str(bindir / "initdb"), "-D", str(self.pgdata), "-U", "products", "--pwfile", str(pwfile),
                   "-A", "scram-sha-256", "-E", "UTF8", "--locale", "C.UTF-8"]
            if user:
                cmd = ["runuser", "-u", user, "--", *cmd]
            subprocess.run(cmd, check=True, capture_output=True)
            pwfile.unlink()
        run_dir.mkdir(parents=True, exist_ok=True)
        if user:
            shutil.chown(run_dir, user)
        self._spawn("postgres", [str(bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.pg_port),
                                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={run_dir}",
                                 "-c", "fsync=on", "-c", "max_connections=200"], env=dict(os.environ), user=user)
        _wait_for("postgres", self._pg_ready, proc=self.processes["postgres"], log=self.log_path("postgres"))
        self._ensure_database()

    def _pg_ready(self) -> bool:
        import psycopg

        with psycopg.connect(self.database_url.replace("/products?", "/postgres?"), connect_timeout=2):
            return True

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url.replace("/products?", "/postgres?"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'products'").fetchone():
                conn.execute("CREATE DATABASE products")

    def restart_postgres(self, down_seconds: float = 0.0) -> None:
        self.stop("postgres", signal.SIGINT)  # fast shutdown: drops every connection
        time.sleep(down_seconds)
        self.start_postgres()

    # -- AWS endpoint ---------------------------------------------------------------
    def start_aws(self) -> None:
        # moto behind the checks real SQS makes on message bodies (devstack.aws_server).
        self._spawn("aws", [sys.executable, "-m", "devstack.aws_server", "--host", "127.0.0.1", "--port", str(self.aws_port)])
        _wait_for("moto server", lambda: _http_ok(f"{self.aws_endpoint}/moto-api/"), proc=self.processes["aws"], log=self.log_path("aws"))
        self.create_queues()

    def create_queues(self) -> None:
        import boto3

        env = self.env()
        kwargs = dict(region_name=REGION, endpoint_url=self.aws_endpoint, aws_access_key_id="local", aws_secret_access_key="local")
        sqs = boto3.client("sqs", **kwargs)
        # The same settings as messaging/ (infra/messaging.py JobQueues).
        fifo = {"FifoQueue": "true", "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId"} if self.fifo else {}
        dlq = sqs.create_queue(QueueName=self._queue_name("product-jobs-dlq"),
                               Attributes={"MessageRetentionPeriod": str(14 * 86400), **fifo})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        jobs = sqs.create_queue(QueueName=self._queue_name("product-jobs"), Attributes={
            "VisibilityTimeout": "300",
            "ReceiveMessageWaitTimeSeconds": "5",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            **fifo,
        })
        assert (jobs["QueueUrl"], dlq["QueueUrl"]) == (env["SQS_QUEUE_URL"], env["SQS_DLQ_URL"]), (jobs, dlq)
        sns = boto3.client("sns", **kwargs)
        topic = sns.create_topic(Name="product-dead-letters")
        assert topic["TopicArn"] == env["SNS_TOPIC_ARN"], topic

    # -- index server -------------------------------------------------------------
    def start_index(self, extra_args: list[str] | None = None) -> None:
        # dotproduct: hybrid (sparse-dense) queries need it (Pinecone docs: Limits); the
        # dense vectors are unit length, so dense scores are the cosine similarities.
        self._spawn("index", [sys.executable, "-m", "devstack.index_server", "--host", "127.0.0.1", "--port", str(self.index_port),
                              "--data-dir", str(self.root / "index"), "--dimension", "384", "--metric", "dotproduct",
                              "--api-key", LOCAL_API_KEY, *(extra_args or [])])
        _wait_for("index server", lambda: _http_ok(f"http://127.0.0.1:{self.index_port}/healthz"),
                  proc=self.processes["index"], log=self.log_path("index"))

    # -- apps -----------------------------------------------------------------------
    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "pelican", "migrate"], env=self.app_env(), check=True, cwd=REPO)

    def refit_lexical(self) -> None:
        """`pelican refit-lexical`: the keyword-search statistics from the table as it is."""
        subprocess.run([sys.executable, "-m", "pelican", "refit-lexical"], env=self.app_env(), check=True, cwd=REPO)

    def start_app(self, name: str, extra_env: dict[str, str] | None = None, *, instance: str | None = None) -> subprocess.Popen:
        argv = {"pelican": [sys.executable, "-m", "pelican", "run"],
                "emu": [sys.executable, "-m", "emu", "run"],
                "frontend": [sys.executable, "-m", "frontend"]}[name]
        return self._spawn(instance or name, argv, env=self.app_env(extra_env))

    def start_infrastructure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_aws()
        self.start_index()
        self.migrate()

    # -- index faults (the index server's local-only /_faults API) ----------------------
    @property
    def _index_faults_url(self) -> str:
        return f"http://127.0.0.1:{self.index_port}/_faults"

    def inject_index_fault(self, **rule) -> None:
        """Makes the next matching index requests fail or stall; see devstack.index_server."""
        request = urllib.request.Request(self._index_faults_url, method="POST", data=json.dumps(rule).encode(),
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()

    def clear_index_faults(self) -> None:
        """Drops every fault rule and releases requests a delay is holding."""
        urllib.request.urlopen(urllib.request.Request(self._index_faults_url, method="DELETE"), timeout=5).read()

    # -- a clean slate (tests and benchmarks, on a stack of their own) ----------------
    def reset_data(self) -> None:
        """Empties the table, the change log, the queues and the index, and drops injected
        index faults. Stop the apps first. It waits for the index server to finish the
        requests it holds: a write delayed by a fault and landing after the wipe would
        leave a vector whose version outranks the next rows' (the change ids restart)."""
        import boto3
        import psycopg
        from pinecone import Pinecone

        from productsearch.settings import IndexSettings

        self.clear_index_faults()

        def index_quiet() -> bool:
            with urllib.request.urlopen(self._index_faults_url, timeout=5) as response:
                return json.load(response)["in_flight_requests"] == 0

        _wait_for("the index server to finish its requests", index_quiet, timeout=60)
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute("SET session_replication_role = replica")  # no change capture while clearing
            conn.execute("TRUNCATE products, product_changes, backfill_progress RESTART IDENTITY")
        # Recreated rather than purged: SQS allows one purge a minute, and messages left
        # in flight by a stopped app would reappear later.
        sqs = boto3.client("sqs", region_name=REGION, endpoint_url=self.aws_endpoint,
                           aws_access_key_id="local", aws_secret_access_key="local")
        env = self.env()
        for url in (env["SQS_QUEUE_URL"], env["SQS_DLQ_URL"]):
            sqs.delete_queue(QueueUrl=url)
        self.create_queues()
        settings = IndexSettings.from_env(env)
        index = Pinecone(api_key=settings.api_key).Index(host=settings.host)
        for namespace in (settings.namespace, settings.tombstone_namespace):
            index.delete(delete_all=True, namespace=namespace)
        stats = index.describe_index_stats()
        left = {ns: s.vector_count for ns, s in (stats.namespaces or {}).items() if s.vector_count}
        if left.keys() & {settings.namespace, settings.tombstone_namespace}:
            raise RuntimeError(f"the index still holds vectors after the reset: {left}")

    def stop_all(self) -> None:
        names = {p.stem for p in (self.root / "pids").glob("*.pid")} | set(self.processes)
        infra = ["index", "aws", "postgres"]
        for name in sorted(names - set(infra)):
            self.stop(name)
        for name in infra:
            if name in names:
                self.stop(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)


def _sh(cmd: list[str], env: dict[str, str]) -> None:
    subprocess.run(cmd, env=env, check=True, cwd=REPO)


def up(stack: LocalStack, catalog: Path, with_frontend: bool, settings_dir: Path = REPO / ".local") -> None:
    """Starts everything and returns when search is complete. settings_dir receives
    stack.env (every endpoint, for scripts and `make reconcile`) and editor.env."""
    stack.stop_all()
    try:
        stack.start_infrastructure()
    except RuntimeError as exc:
        if "holds an index with" not in str(exc):
            raise
        # An index kept from before hybrid search (metric cosine): it is derived data, so
        # it is rebuilt from the table (the backfill below) with the dotproduct metric.
        print("the local index was made with another metric; rebuilding it from the table ...", flush=True)
        stack.stop_all()
        shutil.rmtree(stack.root / "index", ignore_errors=True)
        stack.start_infrastructure()
    env = stack.app_env()
    existing = product_count(stack)
    if existing:
        # Reloading would overwrite edits made through the UI since the first `make up`.
        print(f"keeping the {existing} products already in the database", flush=True)
    else:
        print("loading the sample catalog ...", flush=True)
        _sh([sys.executable, "-m", "pelican", "load-catalog", str(catalog)], env)
    # Before pelican ships anything: every job then carries statistics fitted on the
    # whole table, so keyword and hybrid search weigh terms as BM25 does.
    print("fitting the keyword-search statistics ...", flush=True)
    stack.refit_lexical()
    stack.start_app("pelican")
    stack.start_app("emu")
    editor = editor_credentials(settings_dir / "editor.env")
    if with_frontend:
        stack.start_app("frontend", editor)
    if uncaptured_rows(stack):
        if index_is_empty(stack):
            print("backfilling existing rows into the index ...", flush=True)
            _sh([sys.executable, "-m", "pelican", "backfill"], env)
        else:
            # The index kept its vectors across the restart: re-embed only rows it lacks or
            # holds stale, not the whole table.
            print("comparing the index with the table; re-syncing only the drift ...", flush=True)
            _sh([sys.executable, "-m", "pelican", "reconcile", "--repair"], env)
    else:
        # A fresh load is captured row by row by the triggers; a backfill would embed it all twice.
        print("every row is captured in the change log already; no backfill needed", flush=True)
    stack.write_env_file(settings_dir / "stack.env")
    wait_for_index(stack, timeout=1800)
    print(f"\nlogs: {stack.root / 'logs'}   settings: {settings_dir / 'stack.env'}")
    if with_frontend:
        _wait_for("frontend", lambda: _http_ok(f"http://127.0.0.1:{stack.frontend_port}/healthz"), timeout=180,
                  proc=stack.processes["frontend"], log=stack.log_path("frontend"))
        print(f"editor login (for edits in the UI): {editor['EDITOR_USERNAME']} / {editor['EDITOR_PASSWORD']}  ({settings_dir / 'editor.env'})")
        print(f"UI: http://127.0.0.1:{stack.frontend_port}/")
    else:
        print("frontend not started (apps/frontend not present)")


def editor_credentials(path: Path) -> dict[str, str]:
    """A random local editor login, made once and kept, so edits are never unauthenticated."""
    if not path.exists():
        import secrets

        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"EDITOR_USERNAME=editor\nEDITOR_PASSWORD={secrets.token_urlsafe(12)}\n")
        path.chmod(0o600)
    return dict(line.split("=", 1) for line in path.read_text().split())


def product_count(stack: LocalStack) -> int:
    import psycopg

    with psycopg.connect(stack.database_url) as conn:
        return conn.execute("SELECT count(*) FROM products").fetchone()[0]


def uncaptured_rows(stack: LocalStack) -> int:
    """Rows with no pending change: they reach the index only through a backfill
    (e.g. state kept under .local while the index was wiped)."""
    import psycopg

    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM products p WHERE NOT EXISTS (SELECT 1 FROM product_changes c WHERE c.product_id = p.id)"
        ).fetchone()[0]


def index_is_empty(stack: LocalStack) -> bool:
    from productsearch.index import ProductIndex
    from productsearch.settings import IndexSettings

    return ProductIndex(IndexSettings.from_env(stack.env()), attempts=3).count() == 0


def wait_for_index(stack: LocalStack, timeout: float) -> None:
    """Shows the index catching up with the table, so `make up` returns when search is complete."""
    import psycopg
    from tqdm import tqdm

    from productsearch.index import ProductIndex
    from productsearch.settings import IndexSettings

    import boto3

    from productsearch import aws

    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT count(*) FROM products").fetchone()[0]
    index = ProductIndex(IndexSettings.from_env(stack.env()), attempts=3)
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=stack.aws_endpoint,
                       aws_access_key_id="local", aws_secret_access_key="local")
    deadline = time.monotonic() + timeout
    with tqdm(total=rows, unit="vectors", desc="indexing") as bar:
        while time.monotonic() < deadline:
            count = index.count()
            bar.update(max(0, min(count, rows) - bar.n))
            if count >= rows:
                with psycopg.connect(stack.database_url) as conn:
                    pending = conn.execute("SELECT count(*) FROM product_changes").fetchone()[0]
                depth = aws.queue_depth(sqs, stack.env()["SQS_QUEUE_URL"])
                if pending == 0 and depth["visible"] == 0 and depth["in_flight"] == 0:
                    return
            for name in ("pelican", "emu"):
                if stack.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited; see {stack.log_path(name)}")
            time.sleep(1)
    print("indexing is still going on in the background; the UI's status panel shows progress")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devstack")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--root", type=Path, default=REPO / ".local" / "stack")
    parser.add_argument("--catalog", type=Path, default=REPO / "apps" / "pelican" / "catalog" / "products.csv")
    args = parser.parse_args(argv)
    stack = LocalStack(root=args.root)
    if args.command == "up":
        up(stack, args.catalog, with_frontend=(REPO / "apps" / "frontend" / "frontend" / "__main__.py").exists())
    elif args.command == "down":
        stack.stop_all()
        print("local stack stopped")
    else:
        pid_files = sorted((args.root / "pids").glob("*.pid"))
        if not pid_files:
            print("local stack not running (make up starts it)")
        for pid_file in pid_files:
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, 0)
                state = "running"
            except ProcessLookupError:
                state = "dead"
            print(f"{pid_file.stem:10} pid {pid:7} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
