"""The frontend's own settings, read from the environment like every other setting
(productsearch.settings). A missing or malformed value raises ConfigError naming it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from productsearch.settings import (
    ConfigError,
    DatabaseSettings,
    EmbeddingSettings,
    IndexSettings,
    QueueSettings,
)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = (env.get(name) or "").strip() or str(default)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


@dataclass(frozen=True)
class EditorCredentials:
    username: str
    password: str = field(repr=False)  # never printed, never logged


@dataclass(frozen=True)
class FrontendSettings:
    host: str
    port: int
    page_size: int
    db_pool_size: int
    editor: EditorCredentials | None
    database: DatabaseSettings = field(repr=False)
    index: IndexSettings = field(repr=False)
    embedding: EmbeddingSettings
    queues: QueueSettings

    @property
    def editing_enabled(self) -> bool:
        return self.editor is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> FrontendSettings:
        host = (env.get("FRONTEND_HOST") or "").strip() or "127.0.0.1"
        if any(c.isspace() for c in host) or "/" in host:
            raise ConfigError(f"FRONTEND_HOST must be a host name or address to bind, got {host!r}")
        return cls(
            host=host,
            port=_int(env, "FRONTEND_PORT", 7860, 1, 65535),
            page_size=_int(env, "FRONTEND_PAGE_SIZE", 10, 1, 50),
            db_pool_size=_int(env, "FRONTEND_DB_POOL_SIZE", 10, 1, 100),
            editor=editor_credentials(env),
            database=DatabaseSettings.from_env(env),
            index=IndexSettings.from_env(env),
            embedding=EmbeddingSettings.from_env(env),
            queues=QueueSettings.from_env(env),
        )


def editor_credentials(env: Mapping[str, str]) -> EditorCredentials | None:
    """Both EDITOR_USERNAME and EDITOR_PASSWORD (ECS injects them from Secrets Manager),
    or neither (editing is off). One without the other is a configuration mistake."""
    user = env.get("EDITOR_USERNAME") or ""
    password = env.get("EDITOR_PASSWORD") or ""
    if not user.strip() and not password:
        return None
    if not user.strip():
        raise ConfigError("EDITOR_USERNAME is not set but EDITOR_PASSWORD is (set both, or neither to turn editing off)")
    if not password:
        raise ConfigError("EDITOR_PASSWORD is not set but EDITOR_USERNAME is (set both, or neither to turn editing off)")
    if len(password) < 8:
        raise ConfigError("EDITOR_PASSWORD must be at least 8 characters")
    return EditorCredentials(username=user.strip(), password=password)
