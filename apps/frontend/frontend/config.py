"""The frontend's one settings class, FrontendSettings, read from the environment by
productsearch.env's reader like every other setting: its own variables are its
fields, the editor's credentials are EditorEnv, the shared sections (database,
index, embedding, queues) come from productsearch.settings, and its tuning
(FrontendTuning) is `python -m frontend` options. A missing or malformed value
raises ConfigError naming the variable or option."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import CliSettingsSource

from productsearch.env import RAW, TUNING, ConfigError, EnvSection, Tuning
from productsearch.settings import DatabaseSettings, DatabaseTimeouts, EmbeddingSettings, IndexSettings, QueueSettings

# The largest request body any route reads (the JSON API's bodies are far smaller).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
# AWS docs (Application Load Balancers, connection idle timeout): 60 s by default.
DEFAULT_LOAD_BALANCER_IDLE_SECONDS = 60


class EditorEnv(EnvSection):
    """The editor's credentials (frontend.config.editor_credentials); both secrets."""

    EDITOR_USERNAME: Annotated[SecretStr | None, Field(
        description="the editor's user name; with EDITOR_PASSWORD turns editing on")] = None
    EDITOR_PASSWORD: Annotated[SecretStr | None, Field(
        description="the editor's password (at least 8 characters)", json_schema_extra=RAW)] = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> EditorEnv:
        # One without the other is a configuration mistake, not editing turned off.
        user = self.EDITOR_USERNAME.get_secret_value().strip() if self.EDITOR_USERNAME is not None else ""
        password = self.EDITOR_PASSWORD.get_secret_value() if self.EDITOR_PASSWORD is not None else ""
        if user and not password:
            raise ConfigError("EDITOR_PASSWORD is not set but EDITOR_USERNAME is (set both, or neither to turn editing off)")
        if password and not user:
            raise ConfigError("EDITOR_USERNAME is not set but EDITOR_PASSWORD is (set both, or neither to turn editing off)")
        if password and len(password) < 8:
            raise ConfigError("EDITOR_PASSWORD must be at least 8 characters")
        return self


# The app must keep an idle connection open longer than the load balancer does, or
# the balancer reuses one the app has just closed and the user gets a 502.
KEEP_ALIVE_MARGIN_SECONDS = 5


@dataclass(frozen=True)
class EditorCredentials:
    """Who may edit. The password is compared (frontend.editing), never printed or
    logged: only its check calls get_secret_value()."""

    username: str
    password: SecretStr


class LoginThrottling(BaseModel):
    """How failed editor logins are throttled (frontend.throttle.LoginThrottle):
    max_failures failed logins from one client within window_seconds and that client
    is answered 429 until the window has passed. Five guesses per five minutes leaves a
    mistyping editor room and caps guessing at 1,440 a day per address; NIST SP
    800-63B (5.2.2) allows at most 100 consecutive failures before an account must be
    locked out. Who the client is: FrontendSettings.trusted_proxies."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_failures: int = Field(5, ge=1, le=1000, description="failed logins from one client before it is answered 429")
    window_seconds: int = Field(300, ge=1, le=86400, description="the window those failures are counted in")


class QueryEmbeddingSettings(BaseModel):
    """How the frontend embeds search queries (frontend.query_embedding).

    batch_window_ms: while searches run concurrently, the longest a query waits for
    others to share its forward pass, counted from the oldest waiting query's arrival.
    A lone query on an idle process never waits. 0: batches hold only the queries that
    queued up while the previous forward pass ran. A few milliseconds: well under the
    cost of one query's forward pass alone on a CPU (docs/benchmarks.md), so waiting is
    repaid by the batch.
    max_batch: 1 turns batching off. The API's searches run in anyio's thread pool of
    40 threads (its default), so more than 40 rarely wait.
    cache_size: query vectors kept in an LRU cache keyed by the query's exact text
    after trimming; 0 turns it off. About 1.5 KiB a vector for all-MiniLM-L6-v2 plus
    the text (at most 1,000 characters): about 6 MiB at 4,096 short queries.
    max_batch=1 with cache_size=0 embeds each query in its request's thread, one at a
    time, as before batching existed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    batch_window_ms: int = Field(3, ge=0, le=1000, description="the longest a query waits to share a forward pass")
    max_batch: int = Field(32, ge=1, le=256, description="the most distinct queries in one forward pass")
    cache_size: int = Field(4096, ge=0, le=100_000, description="query vectors kept in an LRU cache")
    timeout_seconds: int = Field(
        10, ge=1, le=600, description="the longest a search waits for its query's vector before it is answered 503")


class FrontendTuning(Tuning):
    """The frontend's tuning: `python -m frontend` options (e.g.
    --logins.max-failures 1000, --query-embedding.cache-size 0) and constructor
    parameters; no deployment sets them."""

    # A search makes up to two attempts.
    index_timeout_seconds: int = Field(3, ge=1, le=60, description="each index request's deadline")
    logins: LoginThrottling = LoginThrottling()
    query_embedding: QueryEmbeddingSettings = QueryEmbeddingSettings()
    database: DatabaseTimeouts = DatabaseTimeouts()


class FrontendSettings(EnvSection):
    """Everything the frontend reads: its own variables (bind address, load
    balancer idle timeout, trusted proxies), the editor's credentials (EditorEnv), the
    shared database, index, embedding and queue settings, and its tuning.

    trusted_proxies (FRONTEND_TRUSTED_PROXIES, default none): comma-separated
    addresses or CIDR networks of the proxies in front of the app (behind the ALB: the
    VPC's CIDR). Only then is X-Forwarded-For read, and the client is its right-most
    entry that is not a trusted proxy; without it the client is the socket's peer,
    since anyone can write an X-Forwarded-For header."""

    host: str = Field("127.0.0.1", validation_alias="FRONTEND_HOST", description="the address the app binds")
    port: int = Field(7860, validation_alias="FRONTEND_PORT", ge=1, le=65535, description="the port the app listens on")
    # compute sets the ALB's idle timeout and this from one config value.
    load_balancer_idle_seconds: int = Field(
        DEFAULT_LOAD_BALANCER_IDLE_SECONDS, validation_alias="LOAD_BALANCER_IDLE_TIMEOUT_SECONDS", ge=1, le=4000,
        description="the load balancer's idle timeout, which the app's keep-alive outlasts")
    trusted_proxies: tuple[str, ...] = Field(
        (), validation_alias="FRONTEND_TRUSTED_PROXIES",
        description="addresses or CIDR networks of the proxies whose X-Forwarded-For is believed")
    editor: EditorCredentials | None = Field(None, json_schema_extra=TUNING)
    database: DatabaseSettings = Field(repr=False, json_schema_extra=TUNING)
    index: IndexSettings = Field(repr=False, json_schema_extra=TUNING)
    embedding: EmbeddingSettings = Field(json_schema_extra=TUNING)
    queues: QueueSettings = Field(json_schema_extra=TUNING)
    # Tuning, not deployment: results per page in the UI, and database connections
    # kept per replica (10 covers the API's concurrent searches and edits).
    page_size: int = Field(10, json_schema_extra=TUNING)
    db_pool_size: int = Field(10, json_schema_extra=TUNING)
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, json_schema_extra=TUNING)
    tuning: FrontendTuning = Field(FrontendTuning(), json_schema_extra=TUNING)

    @field_validator("host")
    @classmethod
    def _bind_address(cls, host: str) -> str:
        if any(c.isspace() for c in host) or "/" in host:
            raise ConfigError(f"FRONTEND_HOST must be a host name or address to bind, got {host!r}")
        return host

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, raw: Any) -> Any:
        if not isinstance(raw, str):
            return raw
        proxies = []
        for item in (part.strip() for part in raw.split(",")):
            if not item:
                continue
            try:
                proxies.append(str(ipaddress.ip_network(item, strict=False)))
            except ValueError:
                raise ConfigError(f"FRONTEND_TRUSTED_PROXIES must list IP addresses or CIDR networks, got {item!r}") from None
        return tuple(proxies)

    @property
    def keep_alive_seconds(self) -> int:
        """uvicorn's idle keep-alive: longer than the load balancer's idle timeout."""
        return self.load_balancer_idle_seconds + KEEP_ALIVE_MARGIN_SECONDS

    @property
    def editing_enabled(self) -> bool:
        """Whether EDITOR_USERNAME and EDITOR_PASSWORD are set (else edits answer 403)."""
        return self.editor is not None

    def uvicorn_options(self) -> dict[str, object]:
        """uvicorn.run's proxy_headers and forwarded_allow_ips for trusted_proxies."""
        if not self.trusted_proxies:
            return {"proxy_headers": False}
        return {"proxy_headers": True, "forwarded_allow_ips": ",".join(self.trusted_proxies)}

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ, options: CliSettingsSource | None = None,
                 args: Any = None, *, embedding: EmbeddingSettings | None = None, **tuning: Any) -> FrontendSettings:
        """The variables from `env`, the tuning from `tuning` and the command line
        (`options` from FrontendTuning.add_options, `args` parsed); `embedding` replaces
        EmbeddingSettings.from_env(env) (the frontend's own entry point passes
        EmbeddingSettings.for_queries). Raises ConfigError naming the variable or
        option that is missing or malformed."""
        tuned = FrontendTuning.build(options, args, **tuning)
        return cls.read(env, editor=editor_credentials(env),
                        database=DatabaseSettings.from_env(env, timeouts=tuned.database),
                        index=IndexSettings.from_env(env), embedding=embedding or EmbeddingSettings.from_env(env),
                        queues=QueueSettings.from_env(env), tuning=tuned)


# Everything FrontendSettings.from_env reads (infra.env_contract derives the frontend's
# variables from these).
FRONTEND_ENV_SECTIONS: tuple[type[EnvSection], ...] = (
    FrontendSettings, EditorEnv, DatabaseSettings, IndexSettings, EmbeddingSettings, QueueSettings)


def editor_credentials(env: Mapping[str, str]) -> EditorCredentials | None:
    """Both EDITOR_USERNAME and EDITOR_PASSWORD (ECS injects them from Secrets Manager),
    or neither (editing is off). One without the other is a configuration mistake.
    Raises ConfigError naming the variable."""
    e = EditorEnv.read(env)
    if e.EDITOR_USERNAME is None or e.EDITOR_PASSWORD is None or not e.EDITOR_PASSWORD.get_secret_value():
        return None  # EditorEnv's validator refused one without the other
    return EditorCredentials(username=e.EDITOR_USERNAME.get_secret_value().strip(), password=e.EDITOR_PASSWORD)
