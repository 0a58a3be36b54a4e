"""No exception from a dependency ends pelican's loop, however long the backlog: each class of
database error, a lost connection, an SQS failure and an arbitrary bug raised inside
a shipping round is logged, rolled back and retried, and pelican ships again
afterwards; failing metrics never hold shipping up. pelican runs in-process (its
ship function wrapped to fail on cue) against the real local Postgres and moto."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from botocore.exceptions import EndpointConnectionError
from psycopg import errors

from devstack.waiting import wait_until
from pelican import service
from pelican.outbox import CLAIM_SQL, ship_batch
from productsearch import change_log
from pelican.config import PelicanSettings
from productsearch.settings import DatabaseSettings, DatabaseTimeouts, QueueSettings

pytestmark = pytest.mark.stack

LOST = "database connection lost; reconnecting"
DATABASE_ERROR = "database error; rolled back, trying again"
UNEXPECTED = "unexpected error; rolled back, trying again"
QUEUE = "queue unavailable; changes kept in the database"


def real(sql: str, raises: type[psycopg.Error]):
    """A failure the server itself raises on pelican's connection; `raises`, the class
    it must raise (anything else fails the test, as an unexpected error in the log)."""
    def fail(conn):
        try:
            conn.execute(sql)
        except raises:
            raise
        except Exception as exc:
            raise AssertionError(f"{sql!r} raised {type(exc).__name__}, not {raises.__name__}") from exc
    fail.raises = raises
    return fail


def raised(exc: BaseException):
    def fail(conn):
        raise exc
    fail.raises = type(exc)
    return fail


# (what fails, the log line pelican answers it with)
FAILURES = [
    (real("SELECT pg_sleep(5)", errors.QueryCanceled), DATABASE_ERROR),  # the statement timeout, an OperationalError
    (real("SELECT 1 / 0", errors.DivisionByZero), DATABASE_ERROR),  # a DataError
    (real("SELEC 1", errors.SyntaxError), DATABASE_ERROR),  # a ProgrammingError
    (raised(errors.LockNotAvailable("could not obtain lock")), DATABASE_ERROR),  # an OperationalError, class 55
    (raised(errors.SerializationFailure("could not serialize access")), DATABASE_ERROR),
    (raised(errors.DeadlockDetected("deadlock detected")), DATABASE_ERROR),
    (raised(errors.UniqueViolation("duplicate key value")), DATABASE_ERROR),  # IntegrityError
    (raised(errors.InternalError_("internal error")), DATABASE_ERROR),
    (raised(errors.DiskFull("could not extend file")), DATABASE_ERROR),  # an OperationalError, class 53
    (raised(errors.InsufficientPrivilege("permission denied")), DATABASE_ERROR),
    (raised(psycopg.NotSupportedError("not supported")), DATABASE_ERROR),
    # What a statement prepared before a column type change raises (class 0A, a NotSupportedError).
    (raised(errors.FeatureNotSupported("cached plan must not change result type")), DATABASE_ERROR),
    (raised(psycopg.DatabaseError("database error")), DATABASE_ERROR),  # the base classes themselves
    (raised(psycopg.Error("error")), DATABASE_ERROR),
    (raised(psycopg.InterfaceError("interface error")), DATABASE_ERROR),
    (raised(errors.AdminShutdown("terminating connection due to administrator command")), LOST),
    (raised(psycopg.OperationalError("server closed the connection unexpectedly")), LOST),  # no SQLSTATE: client-side
    (raised(EndpointConnectionError(endpoint_url="http://sqs")), QUEUE),
    (raised(RuntimeError("a bug")), UNEXPECTED),
    (raised(KeyError("changes")), UNEXPECTED),
]


# The exception classes of the DB-API (PEP 249, "Exceptions"), which every error psycopg
# raises derives from.
DBAPI_CLASSES = (psycopg.Error, psycopg.InterfaceError, psycopg.DatabaseError, psycopg.DataError,
                 psycopg.OperationalError, psycopg.IntegrityError, psycopg.InternalError, psycopg.ProgrammingError,
                 psycopg.NotSupportedError)


def dbapi_class(exc_class: type) -> type | None:
    """The most derived DB-API class `exc_class` is (None for an error not psycopg's)."""
    return next((c for c in exc_class.__mro__ if c in DBAPI_CLASSES), None)


def test_the_failures_raise_every_class_of_psycopg_error():
    raised_classes = {dbapi_class(fail.raises) for fail, _ in FAILURES} - {None}
    assert raised_classes == set(DBAPI_CLASSES)


def in_process_pelican(stack, metric_interval_seconds: int = 60, **env) -> tuple[service.Pelican, threading.Thread]:
    env = {**stack.env(), **env}
    settings = PelicanSettings.from_env(env, poll_interval_seconds=0.2, metric_interval_seconds=metric_interval_seconds,
                                        database=DatabaseTimeouts(statement_timeout_seconds=0.5))
    database = DatabaseSettings.from_env(env, timeouts=settings.database)
    pelican = service.Pelican(database, QueueSettings.from_env(env), settings)
    thread = threading.Thread(target=pelican.run, name="pelican-under-test", daemon=True)
    thread.start()
    return pelican, thread


def stop(pelican: service.Pelican, thread: threading.Thread) -> None:
    assert thread.is_alive(), "pelican's loop ended without a stop request"
    pelican.stopping.set()
    thread.join(20)
    assert not thread.is_alive()


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "pelican.service"]


def test_every_kind_of_failure_in_a_round_is_survived(stack, parts, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pelican.service")
    pending = list(FAILURES)
    calls = {"n": 0}

    def flaky_ship(conn, *args, **kwargs):
        # Every other round fails, after claiming (rows locked, a transaction open), so
        # a failure that is not rolled back would keep those rows from ever shipping.
        calls["n"] += 1
        if pending and calls["n"] % 2:
            fail, _ = pending.pop(0)
            conn.execute(CLAIM_SQL, (10,)).fetchall()
            fail(conn)
            raise AssertionError("the failure did not fail")
        return ship_batch(conn, *args, **kwargs)

    monkeypatch.setattr(service, "ship_batch", flaky_ship)
    ids = [parts.insert(f"Sturdy {i}", "shipped between failures") for i in range(5)]
    pelican, thread = in_process_pelican(stack)
    try:
        wait_until(lambda: not pending, 90, interval=0.2, what="every failure raised")
        late = parts.insert("Late", "inserted after the last failure")
        wait_until(lambda: parts.pending_changes() == 0, 30, interval=0.2, what="every change shipped after the failures")
    finally:
        stop(pelican, thread)
    shipped = {c["id"] for body in parts.drain_queue(parts.env["SQS_QUEUE_URL"], idle_rounds=1) for c in body["changes"]}
    assert shipped == {*ids, late}
    said = messages(caplog)
    expected = [line for _, line in FAILURES]
    assert [m for m in said if m in (LOST, DATABASE_ERROR, UNEXPECTED, QUEUE)] == expected
    assert said[-1] == "pelican stopped"
    errors_logged = [r for r in caplog.records if r.getMessage() == DATABASE_ERROR]
    assert errors_logged[0].sqlstate == "57014"  # the statement timeout, told apart from a lost connection
    assert all(r.error for r in caplog.records if r.getMessage() in (LOST, DATABASE_ERROR, UNEXPECTED))


def test_failing_metrics_never_hold_shipping_up(stack, parts, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pelican.service")
    # The age read outlasts the statement timeout, as a whole-table scan of a long change log did.
    monkeypatch.setattr(change_log, "OLDEST_AGE_SQL", "SELECT (pg_sleep(5) IS NULL)::int::float8 AS age_s")
    pelican, thread = in_process_pelican(stack, metric_interval_seconds=1, CLOUDWATCH_NAMESPACE="ProductSearchErrors")
    put_failures = []

    def failing_put(**kwargs):
        put_failures.append(kwargs)
        raise RuntimeError("CloudWatch is down")

    try:
        first = parts.insert("Metric One", "shipped while the age read times out")
        wait_until(lambda: parts.pending_changes() == 0, 30, interval=0.2, what="a change shipped despite the metric")
        assert "could not read the change log for the metrics; trying again next interval" in messages(caplog)
        monkeypatch.undo()  # the age read works again; now the put fails
        pelican.cloudwatch.put_metric_data = failing_put
        wait_until(lambda: put_failures, 10, interval=0.2, what="a failing put")
        second = parts.insert("Metric Two", "shipped while CloudWatch fails")
        wait_until(lambda: parts.pending_changes() == 0, 30, interval=0.2, what="a change shipped despite CloudWatch")
    finally:
        stop(pelican, thread)
    assert "could not put the metrics; trying again next interval" in messages(caplog)
    shipped = {c["id"] for body in parts.drain_queue(parts.env["SQS_QUEUE_URL"], idle_rounds=1) for c in body["changes"]}
    assert shipped == {first, second}
    assert not [m for m in messages(caplog) if m in (LOST, DATABASE_ERROR, UNEXPECTED)]


def test_a_database_error_that_repeats_reconnects_and_pelican_ships_on(stack, parts, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="pelican.service")
    left = {"n": service.ERRORS_BEFORE_RECONNECT}
    pids = []

    def stuck_then_fine(conn, *args, **kwargs):
        # The same error every round, as a statement whose session state is bad would.
        pids.append(conn.info.backend_pid)
        if left["n"]:
            left["n"] -= 1
            conn.execute(CLAIM_SQL, (10,)).fetchall()
            raise errors.FeatureNotSupported("cached plan must not change result type")
        return ship_batch(conn, *args, **kwargs)

    monkeypatch.setattr(service, "ship_batch", stuck_then_fine)
    pid = parts.insert("Repeated", "shipped after a reconnect")
    pelican, thread = in_process_pelican(stack)
    try:
        wait_until(lambda: parts.pending_changes() == 0, 60, interval=0.2, what="the change shipped after the reconnect")
    finally:
        stop(pelican, thread)
    said = messages(caplog)
    assert said.count(DATABASE_ERROR) == service.ERRORS_BEFORE_RECONNECT
    assert "database errors repeat; reconnecting" in said
    # The rounds before the reconnect ran on one session, the one after it on another.
    first = pids[: service.ERRORS_BEFORE_RECONNECT]
    assert len(set(first)) == 1 and pids[service.ERRORS_BEFORE_RECONNECT] != first[0]
    shipped = {c["id"] for body in parts.drain_queue(parts.env["SQS_QUEUE_URL"], idle_rounds=1) for c in body["changes"]}
    assert shipped == {pid}
