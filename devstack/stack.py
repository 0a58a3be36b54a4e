"""The local stack: a real PostgreSQL server, moto's server for SQS/SNS, the
Pinecone-compatible index server and the apps, each a background process with its
pid and log under one state directory: starting, stopping and reading each part.
The `make up` flow runs on top of it (devstack.up, through ``python -m devstack
up|down|status``), and so do the tests and benchmarks (with their own directory and
free ports).

Named DevStack, not LocalStack: LocalStack is the AWS emulator docker-compose.yml runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3

from devstack import postgres
from devstack.processes import REPO, ProcessSupervisor, free_port, http_ok, wait_for

__all__ = ["LOCAL_API_KEY", "REGION", "REPO", "DevStack", "free_port"]

LOCAL_API_KEY = "local-dev-key"
PRODUCTS_INDEX = "products"
# The local index server's path prefix of a document index's host (its legacy index is
# served at the root).
DOCUMENT_HOST_PREFIX = "/document-indexes"
# all-MiniLM-L6-v2's output size, as the legacy index is started with.
EMBEDDING_DIMENSION = 384
REGION = "us-east-1"


def started_index_api(env_file: Path) -> str | None:
    """The PINECONE_INDEX_API a stack was started with, from the settings file `make up`
    wrote (`.local/stack.env`), or None when there is none or it names none."""
    if not env_file.exists():
        return None
    for line in env_file.read_text().splitlines():
        if line.startswith("PINECONE_INDEX_API="):
            return line.partition("=")[2].strip() or None
    return None


@dataclass
class DevStack(ProcessSupervisor):
    """One local stack rooted at *root* (pgdata, index data, logs, pids) on the given
    loopback ports. Construct it with keywords; the defaults are `make up`'s ports."""

    pg_port: int = 55432
    aws_port: int = 55000
    index_port: int = 55081
    frontend_port: int = 7860
    # Milliseconds the index server and the SQS/SNS server add to each API request, as
    # the network to Pinecone and AWS would; devstack.costs.set_latency changes them
    # while the stack runs, and read_stats / reset_stats read their request counters.
    index_latency_ms: float = 0.0
    aws_latency_ms: float = 0.0
    # The jobs queue's MessageRetentionPeriod in seconds (SQS: 60..1209600); None keeps
    # SQS's default of 4 days. Tests scale it down; it applies from the next
    # create_queues (reset_data recreates the queues).
    job_retention_seconds: int | None = None
    # Which Pinecone API the products index speaks (IndexSettings.api): "vectors", a
    # legacy dotproduct index, or "documents", a document index with full-text search
    # (infra.document_index.product_schema). `make up` takes PINECONE_INDEX_API.
    index_api: str = "vectors"

    # -- paths and environment --------------------------------------------------
    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def database_url(self) -> str:
        return f"postgresql://products:{postgres.PASSWORD}@127.0.0.1:{self.pg_port}/products?sslmode=disable"

    @property
    def aws_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.aws_port}"

    @property
    def index_host(self) -> str:
        """The products index's data-plane host on the local index server."""
        base = f"http://127.0.0.1:{self.index_port}"
        return f"{base}{DOCUMENT_HOST_PREFIX}/{PRODUCTS_INDEX}" if self.index_api == "documents" else base

    def queue_url(self, name: str) -> str:
        return f"{self.aws_endpoint}/123456789012/{name}"

    def _queue_name(self, base: str) -> str:
        return f"{base}.fifo"  # FIFO queues, as messaging/ deploys them

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
            "PINECONE_HOST": self.index_host,
            "PINECONE_INDEX_API": self.index_api,
            "PINECONE_API_KEY": LOCAL_API_KEY,
            "PINECONE_INDEX": PRODUCTS_INDEX,
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

    # -- postgres -----------------------------------------------------------------
    def start_postgres(self) -> None:
        """Creates the cluster on first use, starts the server and the `products` database."""
        user = postgres.server_user()
        run_dir = self.root / "pgrun"
        postgres.prepare_cluster(self.root, self.pgdata, run_dir, user)
        self.spawn("postgres", postgres.server_argv(self.pgdata, self.pg_port, run_dir), env=dict(os.environ), user=user)
        wait_for("postgres", lambda: postgres.accepts_connections(self.database_url),
                 proc=self.processes["postgres"], log=self.log_path("postgres"))
        postgres.ensure_database(self.database_url)

    # -- AWS endpoint ---------------------------------------------------------------
    def start_aws(self) -> None:
        # moto behind the checks real SQS makes on message bodies (devstack.aws_server).
        self.spawn("aws", [sys.executable, "-m", "devstack.aws_server", "--host", "127.0.0.1",
                           "--port", str(self.aws_port), "--latency-ms", str(self.aws_latency_ms)], env=self.app_env())
        wait_for("moto server", lambda: http_ok(f"{self.aws_endpoint}/moto-api/"), proc=self.processes["aws"], log=self.log_path("aws"))
        self.create_queues()

    def aws_client(self, service: str):
        """A boto3 client for *service* ("sqs", "sns", ...) on this stack's AWS endpoint."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.aws_endpoint,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def create_queues(self) -> None:
        """Creates the jobs queue, its dead-letter queue and the dead-letter topic, as
        messaging/ deploys them (a no-op for those that exist with the same attributes)."""
        env = self.env()
        sqs = self.aws_client("sqs")
        # The same settings as messaging/ (infra/messaging.py JobQueues).
        fifo = {"FifoQueue": "true", "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId"}
        dlq = sqs.create_queue(QueueName=self._queue_name("product-jobs-dlq"),
                               Attributes={"MessageRetentionPeriod": str(14 * 86400), **fifo})
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        jobs = sqs.create_queue(QueueName=self._queue_name("product-jobs"), Attributes={
            "VisibilityTimeout": "300",
            "ReceiveMessageWaitTimeSeconds": "5",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
            **({"MessageRetentionPeriod": str(self.job_retention_seconds)} if self.job_retention_seconds else {}),
            **fifo,
        })
        assert (jobs["QueueUrl"], dlq["QueueUrl"]) == (env["SQS_QUEUE_URL"], env["SQS_DLQ_URL"]), (jobs, dlq)
        sns = self.aws_client("sns")
        topic = sns.create_topic(Name="product-dead-letters")
        assert topic["TopicArn"] == env["SNS_TOPIC_ARN"], topic

    # -- index server -------------------------------------------------------------
    def start_index(self, extra_args: list[str] | None = None) -> None:
        # dotproduct: hybrid (sparse-dense) queries need it (Pinecone docs: Limits); the
        # dense vectors are unit length, so dense scores are the cosine similarities.
        self.spawn("index", [sys.executable, "-m", "devstack.index_server", "--host", "127.0.0.1", "--port", str(self.index_port),
                              "--data-dir", str(self.root / "index"), "--dimension", str(EMBEDDING_DIMENSION), "--metric", "dotproduct",
                              "--api-key", LOCAL_API_KEY, "--latency-ms", str(self.index_latency_ms), *(extra_args or [])],
                   env=self.app_env())
        wait_for("index server", lambda: http_ok(f"http://127.0.0.1:{self.index_port}/healthz"),
                  proc=self.processes["index"], log=self.log_path("index"))
        if self.index_api == "documents":
            self.create_document_index(PRODUCTS_INDEX)

    def create_document_index(self, name: str) -> str:
        """Creates the document index `name` with the products schema on the local
        index server, as data/ does on Pinecone (pineconeIndexApi documents), unless it
        exists; returns its host."""
        from pinecone import Pinecone

        from infra.document_index import product_schema

        pc = Pinecone(api_key=LOCAL_API_KEY, host=f"http://127.0.0.1:{self.index_port}")
        if name in [i.name for i in pc.indexes.list()]:
            return str(pc.indexes.describe(name).host)
        return str(pc.indexes.create(name=name, schema=product_schema(EMBEDDING_DIMENSION)).host)

    # -- apps -----------------------------------------------------------------------
    def run_pelican(self, *args: str) -> None:
        """A one-off `pelican` command against this stack, in the foreground, its logs
        in text at WARNING unless LOG_LEVEL says otherwise: whoever started it reads them
        on a terminal, where each command prints its own result and an INFO line would
        repeat it (the services' logs stay JSON). Raises subprocess.CalledProcessError
        when it fails."""
        env = self.app_env({"LOG_FORMAT": "text", "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
        subprocess.run([sys.executable, "-m", "pelican", *args], env=env, check=True, cwd=REPO)

    def migrate(self) -> None:
        """`pelican migrate`: the schema up to date."""
        self.run_pelican("migrate")

    def refit_lexical(self) -> None:
        """`pelican refit-lexical`: the keyword-search statistics from the table as it is."""
        self.run_pelican("refit-lexical")

    def start_app(self, name: str, extra_env: dict[str, str] | None = None, *, instance: str | None = None,
                  options: dict[str, object] | None = None) -> subprocess.Popen:
        """Start app `name` under this stack's environment plus `extra_env`, with
        `options` (tuning field names and values, e.g. {"claim_batch_size": 5}) as its
        command line's --kebab-case options."""
        argv = {"pelican": [sys.executable, "-m", "pelican", "run"],
                "emu": [sys.executable, "-m", "emu", "run"],
                "frontend": [sys.executable, "-m", "frontend"]}[name]
        argv += [arg for key, value in (options or {}).items() for arg in ("--" + key.replace("_", "-"), str(value))]
        # JSON whatever the caller's shell says: benchmarks and tests read these logs.
        return self.spawn(instance or name, argv, env=self.app_env({"LOG_FORMAT": "json", **(extra_env or {})}))

    def start_infrastructure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.start_postgres()
        self.start_aws()
        self.start_index()
        self.migrate()

    # -- make status -------------------------------------------------------------------
    def sync_lines(self, timeout: float = 5.0) -> list[str]:
        """What this stack's frontend says of the sync (its GET /api/status,
        docs/frontend.md), as lines for `make status`: the UI's address and the
        index's API, then whether the index is in sync (counts compared, nothing
        waiting) with the reading's age,
        or that the reading is stale, the figures behind that, what holds vacuum back,
        then any part it could not read. Empty when no frontend was started under this
        root; the address and why when it does not answer within `timeout` seconds."""
        if "frontend" not in self.known():
            return []
        url = f"http://127.0.0.1:{self.frontend_port}/"
        try:
            with urllib.request.urlopen(f"{url}api/status", timeout=timeout) as response:
                s = json.load(response)
        except (OSError, ValueError) as exc:
            return [f"UI: {url}  (not answering: {exc})"]

        def n(value) -> str:
            return "unavailable" if value is None else f"{value:,}"

        def q(depth) -> str:
            return "unavailable" if depth is None else f"{depth['visible']:,} waiting, {depth['in_flight']:,} in flight"

        def age(seconds) -> str:
            return "unavailable" if seconds is None else f"{seconds:,.0f} s"

        # The frontend marks a reading older than its stale limit (frontend/status.py)
        # instead of passing it off as current; so does this line.
        taken = f"read at {s['read_at']}, {age(s.get('age_s'))} ago"
        if s.get("stale"):
            verdict = f"unknown: the latest reading is stale ({taken}); these figures may no longer hold"
        else:
            verdict = f"{'in sync' if s['in_sync'] else 'catching up'} ({taken})"
        api = "Documents API" if self.index_api == "documents" else "legacy Vectors API"
        lines = [f"UI: {url}  (index: {api})",
                 f"sync: {verdict}",
                 f"  rows {n(s['rows'])}, vectors {n(s['vectors'])}, changes waiting {n(s['changes_pending'])}",
                 f"  jobs queue: {q(s['queue'])}; dead-letter queue: {q(s['dead_letters'])}",
                 f"  oldest open transaction: {age(s.get('oldest_transaction_age_s'))}; "
                 f"change-log rows awaiting vacuum: {n(s.get('outbox_dead_tuples'))}"]
        lines += [f"  {part} unavailable: {error}" for part, error in s["errors"].items()]
        return lines

    # -- stopping --------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stops the apps first, then the index server, moto and Postgres (fast shutdown)."""
        names = self.known()
        infra = ["index", "aws", "postgres"]
        for name in sorted(names - set(infra)):
            self.stop(name)
        for name in infra:
            if name in names:
                self.stop(name, signal.SIGINT if name == "postgres" else signal.SIGTERM)

