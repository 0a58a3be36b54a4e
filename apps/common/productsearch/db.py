"""Postgres connections.

Every connection the apps open gets its libpq parameters from connection_params,
so a database that goes silent (no FIN or RST: an RDS Multi-AZ failover, a dropped
route) is noticed within DatabaseSettings.dead_connection_seconds instead of the
kernel's ~15 minutes:

- TCP keepalives find a dead peer under an idle connection, e.g. pelican's LISTEN
  connection waiting in notifies(), which sends nothing on its own;
- tcp_user_timeout bounds how long sent data may stay unacknowledged;
- the server-side statement_timeout bounds how long a healthy server may work on a
  statement, so a connection that has not answered for statement_timeout plus
  dead_connection_seconds is dead, and GuardedConnection cuts it. That stall guard
  also covers what the kernel cannot see: a proxy or load balancer in between
  (RDS Proxy, PgBouncer, an NLB) keeps acknowledging packets and keepalives for a
  database that is gone.

With DATABASE_SECRET_ARN set, every connection (db.connect and the frontend's pool
alike) takes its username and password from that Secrets Manager secret, and one the
database refuses for its credentials is retried once with the secret re-read: a
rotation changes the password under running tasks (SecretCredentials).

No connection prepares statements on the server (PREPARE_THRESHOLD). psycopg
prepares a statement after it has run a few times; once a migration changes the type
of a column such a statement returns (ALTER TABLE ... ALTER COLUMN ... TYPE), the
server refuses every later execution of it with "cached plan must not change result
type" (FeatureNotSupported), and an autocommit connection, such as every pooled one,
keeps failing until it is closed. Unprepared, each statement is parsed and planned
per execution: for the apps' statements (lookups by primary key, short index scans)
less than a network round trip to a database on another host, and little next to a
search's model run and index query or a claim's SQS send. A connection pooler in
transaction mode (PgBouncer, RDS Proxy) needs it too.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from pydantic import SecretStr

from productsearch import aws
from productsearch.retry import with_backoff
from productsearch.settings import DatabaseSettings, secret_region

log = logging.getLogger(__name__)

# psycopg's prepare_threshold: None never prepares (see the module docstring).
PREPARE_THRESHOLD = None
KEEPALIVE_PROBES = 3


def _settings(database: DatabaseSettings | str) -> DatabaseSettings:
    # A bare URL (tests, scripts) gets the default timeouts.
    return DatabaseSettings(database_url=SecretStr(database)) if isinstance(database, str) else database


def connection_params(database: DatabaseSettings | str, *, application_name: str,
                      statement_timeout: bool = True) -> dict[str, Any]:
    """The libpq keyword parameters for a connection to `database` (merged over the
    URL's own): connect_timeout, keepalives, tcp_user_timeout (ms) and, unless
    statement_timeout is False (schema migrations), `-c statement_timeout=<n>ms` in
    options, appended to any options the URL carries.

    The keepalive probes start after idle = dead_connection_seconds - 3 * interval
    and give up after 3 unanswered ones, so a silent peer is declared dead after
    dead_connection_seconds (libpq parameters are whole seconds)."""
    database = _settings(database)
    dead_s = database.dead_connection_seconds
    interval = max(1, dead_s // (2 * KEEPALIVE_PROBES))
    params: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": max(2, dead_s // 3),
        "keepalives": 1,
        "keepalives_idle": max(1, dead_s - KEEPALIVE_PROBES * interval),
        "keepalives_interval": interval,
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": dead_s * 1000,
    }
    if statement_timeout:
        existing = conninfo_to_dict(database.url).get("options") or ""
        params["options"] = f"{existing} -c statement_timeout={round(database.statement_timeout_seconds * 1000)}ms".strip()
    return params


# invalid_password and invalid_authorization_specification (e.g. the role is gone, as
# after a rotation that alternates between two users).
AUTH_FAILURE_SQLSTATES = frozenset({"28P01", "28000"})
# libpq reports no SQLSTATE for a refused connection attempt (exc.sqlstate is None),
# so the server's FATAL message, in English as on RDS, is matched too.
_AUTH_FAILURE_MESSAGE = re.compile(r"authentication failed for user|role \".*\" does not exist")


def is_auth_failure(exc: psycopg.OperationalError) -> bool:
    """Whether the database refused `exc`'s connection for its credentials
    (SQLSTATE 28P01 or 28000), rather than being unreachable or overloaded."""
    return exc.sqlstate in AUTH_FAILURE_SQLSTATES or bool(_AUTH_FAILURE_MESSAGE.search(str(exc)))


class SecretUnavailable(psycopg.OperationalError):
    """The database secret could not be read or does not hold `username` and
    `password`. An OperationalError, so every caller's reconnect backoff covers it."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)  # never printed, never logged

    def params(self) -> dict[str, str]:
        """libpq keyword parameters; they override any user or password in the URL."""
        return {"user": self.username, "password": self.password}


class SecretCredentials:
    """The database username and password held in a Secrets Manager secret (JSON with
    at least `username` and `password`, as the RDS-managed secret), read on first use
    and re-read by refresh() when the database refuses them.

    Re-reads are at most one per MIN_REFRESH_INTERVAL_S: while a rotation has set
    the new password in the database but not yet promoted it to AWSCURRENT, every
    reconnect attempt is refused, and that must not become a flood of
    GetSecretValue calls. Thread-safe; one instance per secret per process
    (for_settings), so the pool's connections and pelican's share what was read."""

    MIN_REFRESH_INTERVAL_S = 2.0

    def __init__(self, arn: str, endpoint_url: str | None = None):
        self.arn = arn
        self._endpoint_url = endpoint_url
        self._lock = threading.Lock()
        self._client = None
        self._current: Credentials | None = None
        self._read_at = float("-inf")

    def current(self) -> Credentials:
        """The credentials last read, reading the secret if never read. Raises
        SecretUnavailable."""
        with self._lock:
            if self._current is None:
                self._current = self._read()
            return self._current

    def refresh(self, refused: Credentials) -> Credentials:
        """The secret's credentials after the database refused `refused`: re-read, unless
        another connection already re-read them (they differ from `refused`) or the
        last read is under MIN_REFRESH_INTERVAL_S old. Raises SecretUnavailable."""
        with self._lock:
            if self._current is not None and self._current != refused:
                return self._current
            if self._current is None or time.monotonic() - self._read_at >= self.MIN_REFRESH_INTERVAL_S:
                self._current = self._read()
            return self._current

    def _read(self) -> Credentials:
        try:
            if self._client is None:
                self._client = aws.secrets_client(secret_region(self.arn), self._endpoint_url)
            raw = self._client.get_secret_value(SecretId=self.arn)["SecretString"]
        except (BotoCoreError, ClientError, KeyError) as exc:
            raise SecretUnavailable(f"could not read the database secret {self.arn}: {type(exc).__name__}: {exc}") from None
        self._read_at = time.monotonic()
        try:
            value = json.loads(raw)
            username, password = value["username"], value["password"]
        except (ValueError, TypeError, KeyError):
            # The secret's text is not echoed: it may hold the password.
            raise SecretUnavailable(f"the database secret {self.arn} is not JSON with username and password") from None
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise SecretUnavailable(f"the database secret {self.arn} has an empty or non-string username or password")
        return Credentials(username, password)

    _instances: dict[tuple[str, str | None], SecretCredentials] = {}
    _instances_lock = threading.Lock()

    @classmethod
    def for_settings(cls, database: DatabaseSettings) -> SecretCredentials | None:
        """The process's instance for database.secret_arn; None when it is not set."""
        if not database.secret_arn:
            return None
        key = (database.secret_arn, database.aws_endpoint_url)
        with cls._instances_lock:
            if key not in cls._instances:
                cls._instances[key] = cls(*key)
            return cls._instances[key]


def stall_limit_seconds(database: DatabaseSettings | str) -> float:
    """How long a connection may leave a request unanswered before GuardedConnection
    cuts it: the server may work statement_timeout_seconds, then the network gets
    dead_connection_seconds."""
    database = _settings(database)
    return float(database.statement_timeout_seconds + database.dead_connection_seconds)


class _StallReaper:
    """One daemon thread per process that shuts down the socket of a connection whose
    wait has passed its deadline. Shutting the socket down (rather than closing it)
    wakes the thread blocked on it, and libpq reports the connection as lost."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._deadlines: dict[int, tuple[float, float, psycopg.Connection]] = {}
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, conn: psycopg.Connection, limit_s: float) -> int:
        with self._changed:
            token = next(self._tokens)
            self._deadlines[token] = (time.monotonic() + limit_s, limit_s, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="db-stall-reaper", daemon=True)
                self._thread.start()
            self._changed.notify()
            return token

    def unwatch(self, token: int) -> bool:
        """False if the deadline had passed and the connection was cut."""
        with self._changed:
            return self._deadlines.pop(token, None) is not None

    def _run(self) -> None:
        with self._changed:
            while True:
                now = time.monotonic()
                for token, (deadline, limit_s, conn) in list(self._deadlines.items()):
                    if deadline <= now:
                        del self._deadlines[token]
                        # Under the lock: the waiter cannot return and close (and the
                        # fd be reused) while the socket is shut down.
                        _cut(conn, limit_s)
                upcoming = [d for d, _, _ in self._deadlines.values()]
                self._changed.wait(timeout=max(0.0, min(upcoming) - now) if upcoming else None)


def _cut(conn: psycopg.Connection, limit_s: float) -> None:
    try:
        fd = conn.pgconn.socket
    except psycopg.OperationalError:
        return  # already closed
    log.warning("database did not answer; cutting the connection", extra={"waited_s": limit_s, "pid": conn.info.backend_pid})
    sock = socket.socket(fileno=os.dup(fd))
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


_reaper = _StallReaper()


class GuardedConnection(psycopg.Connection):
    """A psycopg connection that gives up on a server that stops answering.

    Every round trip after connecting (execute, commit, notifies) goes through
    psycopg's Connection.wait; while stall_limit_s is set, a wait that lasts longer
    than stall_limit_s (plus the timeout the caller gave it, e.g. notifies(timeout=))
    gets its socket shut down, and the caller sees psycopg.OperationalError. None
    (the default, and for migrations) leaves only the kernel's keepalives. Call
    notifies() with a timeout: a wait for notifications without one counts as stalled
    after stall_limit_s."""

    stall_limit_s: float | None = None

    # psycopg's keywords pass through **kwargs, which pyright reads as a narrower signature.
    @classmethod
    def connect(cls, conninfo: str = "", *, credentials: SecretCredentials | None = None,  # pyright: ignore[reportIncompatibleMethodOverride]
                **kwargs: Any):
        """psycopg's Connection.connect; with `credentials`, connects as the secret's
        user and, when the database refuses those credentials (is_auth_failure),
        re-reads the secret and tries once more. psycopg_pool passes its `kwargs`
        here, so pool_options carries `credentials` to the pool's connections too.
        Raises psycopg.OperationalError (SecretUnavailable when the secret cannot be
        read)."""
        if credentials is None:
            return super().connect(conninfo, **kwargs)
        tried = credentials.current()
        try:
            return super().connect(conninfo, **kwargs, **tried.params())
        except psycopg.OperationalError as exc:
            if not is_auth_failure(exc):
                raise
            fresh = credentials.refresh(tried)
            if fresh == tried:
                raise
            log.warning("the database refused the credentials; connecting with the ones the secret holds now",
                        extra={"secret": credentials.arn, "username": fresh.username})
            return super().connect(conninfo, **kwargs, **fresh.params())

    def wait(self, gen, *args, **kwargs):
        limit_s = self.stall_limit_s
        if limit_s is None:
            return super().wait(gen, *args, **kwargs)
        timeout = kwargs.get("timeout", args[1] if len(args) > 1 else None)
        token = _reaper.watch(self, limit_s + (timeout or 0.0))
        try:
            return super().wait(gen, *args, **kwargs)
        except psycopg.OperationalError as exc:
            if not _reaper.unwatch(token):
                raise psycopg.OperationalError(
                    f"the database did not answer within {limit_s:.0f}s; connection cut ({exc})"
                ) from exc
            raise
        finally:
            _reaper.unwatch(token)


def guard(database: DatabaseSettings | str):
    """A psycopg_pool `configure` callback that arms a GuardedConnection's stall guard."""
    limit_s = stall_limit_seconds(database)

    def configure(conn: GuardedConnection) -> None:
        conn.stall_limit_s = limit_s

    return configure


def pool_options(database: DatabaseSettings | str, *, application_name: str) -> dict[str, Any]:
    """Keyword arguments for psycopg_pool.ConnectionPool: guarded autocommit
    connections with dict rows and connection_params, as the secret's user when
    DATABASE_SECRET_ARN is set (GuardedConnection.connect)."""
    kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row, "prepare_threshold": PREPARE_THRESHOLD,
                              **connection_params(database, application_name=application_name)}
    credentials = SecretCredentials.for_settings(_settings(database))
    if credentials is not None:
        kwargs["credentials"] = credentials
    return {"connection_class": GuardedConnection, "kwargs": kwargs, "configure": guard(database)}


def connect(database: DatabaseSettings | str, *, autocommit: bool = False, attempts: int = 1,
            application_name: str = "productsearch", statement_timeout: bool = True) -> GuardedConnection:
    """Connects with connection_params and the stall guard armed (neither the guard nor
    statement_timeout when statement_timeout is False, as for migrations), retrying
    with backoff (0.2 s doubling to 5 s) when attempts > 1 (e.g. while the database restarts). Raises
    psycopg.OperationalError when the last attempt fails."""
    params = connection_params(database, application_name=application_name, statement_timeout=statement_timeout)
    credentials = SecretCredentials.for_settings(_settings(database))
    conn = with_backoff(
        lambda: GuardedConnection.connect(_settings(database).url, autocommit=autocommit, row_factory=dict_row,
                                          prepare_threshold=PREPARE_THRESHOLD, credentials=credentials, **params),
        retryable=lambda exc: isinstance(exc, psycopg.OperationalError), attempts=attempts,
        # No jitter: each process reconnects alone, so there is no herd to spread out.
        base_delay=0.2, max_delay=5.0, jitter=False, what="database connect",
        message="database unreachable, retrying", reraise=True)
    if statement_timeout:
        conn.stall_limit_s = stall_limit_seconds(database)
    return conn
