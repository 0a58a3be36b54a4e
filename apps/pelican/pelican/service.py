"""The pelican service loop: claim and ship, then wait for the next poll or a NOTIFY.

Writers send no NOTIFY (a pending notification serialises commits cluster-wide,
schema/current.sql), so pelican finds their changes by polling, adaptively (AdaptivePoll):
it claims again at once while claims find changes, then waits
busy_poll_interval_seconds after the first empty claim, the wait doubling
after each further empty claim up to poll_interval_seconds. The
idle poll therefore bounds how long an isolated change waits before it is claimed,
and is what an idle pelican costs: one indexed claim per idle poll. pelican still
LISTENs on product_changes: backfill and recapture NOTIFY once per batch they
capture, which wakes it at once.

Backpressure: while the jobs queue holds max_queued_messages or more
(pelican.backpressure), pelican claims nothing and the changes wait in the change log,
which keeps them, rather than on the queue, whose retention would drop them.

Survives a dropped connection or a database restart by reconnecting with backoff
(a silent drop is noticed within DatabaseTimeouts.dead_connection_seconds, see
productsearch.db), a database without the schema by waiting for the migration, and
an unreachable SQS endpoint by keeping the changes (uncommitted claims roll back)
and trying again. Any other error, a statement timeout included, is logged and
rolled back, and the loop tries again after a backoff on the same connection; after
ERRORS_BEFORE_RECONNECT database errors in a row it reconnects as well. Only a stop
request ends it. A migration that changes a column's type under it costs nothing:
no connection prepares statements (productsearch.db). The metrics are read and put apart from shipping, so their
failing never holds changes back. SIGTERM lets the batch in hand finish, then exits.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import errors

from pelican.backpressure import QueueGauge, RecentPacking
from pelican.outbox import SendFailed, SendRefused, ship_batch
from productsearch import aws, change_log, db
from productsearch.lifecycle import stop_on_signals
from productsearch.logs import brief
from productsearch.retry import Backoff
from pelican.config import PelicanSettings
from productsearch.settings import DatabaseSettings, QueueSettings

log = logging.getLogger(__name__)
CHANNEL = "product_changes"
# What a database without the schema, or with a migration half applied, answers.
# Waiting rather than migrating: on ECS a one-off task migrates
# (scripts/aws/run-migration.sh), and pelican's role need not have DDL rights.
SCHEMA_MISSING = (errors.UndefinedTable, errors.UndefinedFunction, errors.UndefinedColumn)
AGE_METRIC = "OldestUnshippedChangeAgeSeconds"
# emu's autoscaling (compute/) tracks this name: keep it.
WAITING_METRIC = "ChangesWaiting"
# What holds vacuum back (change_log.vacuum_horizon); the alarms in infra/ use these names.
HELD_TRANSACTION_METRIC = "OldestTransactionAgeSeconds"
DEAD_TUPLES_METRIC = "OutboxDeadTuples"
UNITS = {AGE_METRIC: "Seconds", WAITING_METRIC: "Count", HELD_TRANSACTION_METRIC: "Seconds", DEAD_TUPLES_METRIC: "Count"}
# A transaction open longer than this is logged as holding vacuum back. No statement
# the apps run may last longer than the statement timeout (30 s by
# default), and no app keeps a transaction open across statements while idle, so a
# transaction this old is a report, a dump or a session left idle in transaction.
HELD_TRANSACTION_WARN_SECONDS = 300.0
# SQLSTATEs after which the session is gone even if the socket still looks open
# (PostgreSQL docs, Appendix A): class 08, connection exception, and the server
# shutting down or not yet accepting this session (57P01..57P03).
CONNECTION_LOST_STATES = ("57P01", "57P02", "57P03")
# After this many database errors in a row on a live connection, pelican reconnects
# too: whatever session state made them repeat (a setting, a cached statement, a
# stuck transaction) goes with the connection.
ERRORS_BEFORE_RECONNECT = 3


class AdaptivePoll:
    """How long pelican waits after an empty claim, in seconds: busy_s after a claim that
    found changes or a NOTIFY, then doubling with each empty claim up to idle_s
    (idle_s below busy_s is raised to busy_s). A change committed while pelican waits
    is claimed at the end of that wait: within busy_s while changes keep arriving,
    within idle_s at most after a quiet spell; an idle pelican claims once per idle_s."""

    def __init__(self, busy_s: float, idle_s: float):
        self.busy_s = busy_s
        self.idle_s = max(idle_s, busy_s)
        self._next_s = busy_s

    def found_work(self) -> None:
        self._next_s = self.busy_s

    def found_nothing(self) -> float:
        """The wait before the next claim; the one after it doubles."""
        wait_s = self._next_s
        self._next_s = min(wait_s * 2, self.idle_s)
        return wait_s


class Pelican:
    def __init__(self, database: DatabaseSettings, queues: QueueSettings, settings: PelicanSettings):
        self.database = database
        self.queues = queues
        self.settings = settings
        self.sqs = aws.sqs_client(queues)
        self.cloudwatch = aws.cloudwatch_client(queues) if settings.cloudwatch_namespace else None
        self._metric_put_at = float("-inf")
        self.gauge = QueueGauge(self.sqs, queues.jobs_queue_url, settings.max_queued_messages,
                                settings.queue_check_interval_seconds)
        self.packing = RecentPacking(default=settings.changes_per_message)
        self._paused = False
        self.stopping = threading.Event()
        self._work: psycopg.Connection | None = None
        self._listen: psycopg.Connection | None = None

    def install_signal_handlers(self) -> None:
        stop_on_signals(self.stopping, log, "finishing the batch in hand")

    def _connect(self) -> None:
        if self._work is None or self._work.closed:
            self._work = db.connect(self.database, application_name="pelican")
        if self._listen is None or self._listen.closed:
            self._listen = db.connect(self.database, autocommit=True, application_name="pelican-listen")
            self._listen.execute(f"LISTEN {CHANNEL}")

    def _disconnect(self) -> None:
        for conn in (self._work, self._listen):
            if conn is not None:
                try:
                    conn.close()
                except Exception:
                    pass
        self._work = self._listen = None

    def _wait_for_wakeup(self, timeout_s: float) -> bool:
        """Waits up to timeout_s seconds; True on a NOTIFY, False after the timeout or
        soon after a stop request."""
        deadline = time.monotonic() + timeout_s
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            woke = any(True for _ in self._listen.notifies(timeout=min(remaining, 0.5), stop_after=1))
            if woke:
                # Drain the burst so one wake-up covers many notifications.
                for _ in self._listen.notifies(timeout=0.01):
                    pass
                return True
        return False

    def publish_metrics(self) -> dict[str, float] | None:
        """At most once per metric_interval_seconds: reads what holds vacuum back
        (change_log.vacuum_horizon) and logs a warning while a transaction has been
        open over HELD_TRANSACTION_WARN_SECONDS, whether or not CloudWatch is
        configured; then, with CLOUDWATCH_NAMESPACE, puts in one request:
        OldestUnshippedChangeAgeSeconds (seconds since the oldest waiting change was
        captured, 0 when none waits: productsearch.change_log), ChangesWaiting (Count:
        the change log's rows plus the jobs queue's messages times the recent mean
        changes per message, an estimate), OldestTransactionAgeSeconds (Seconds) and
        OutboxDeadTuples (Count). An alarm on the age (missing data included) tells
        that pelican has stopped shipping, and emu scales on ChangesWaiting. Returns
        the values put, or None when nothing was put.

        Never raises for a failing dependency: each figure that cannot be read is
        left out (a database error is rolled back), a failed put is dropped, each
        logged, and the next try comes an interval later, so the metrics can
        neither hold shipping up nor make the loop spin on them."""
        if time.monotonic() - self._metric_put_at < self.settings.metric_interval_seconds:
            return None
        self._metric_put_at = time.monotonic()
        values: dict[str, float] = {}
        horizon = self._read_vacuum_horizon()
        if self.cloudwatch is None:
            return None
        if horizon is not None:
            values[HELD_TRANSACTION_METRIC] = horizon.oldest_transaction_age_s
            values[DEAD_TUPLES_METRIC] = float(horizon.outbox_dead_tuples)
        outbox: change_log.ChangeCount | None = None
        try:
            with self._work.transaction():
                values[AGE_METRIC] = change_log.oldest_change_age(self._work) or 0.0
                outbox = change_log.count_changes(self._work)
        except Exception as exc:
            self._rollback()
            log.warning("could not read the change log for the metrics; trying again next interval",
                        extra={"error": brief(exc), "sqlstate": getattr(exc, "sqlstate", None)})
        if outbox is not None:
            try:
                queued = self.gauge.read()
            except Exception as exc:
                log.warning("could not read the jobs queue's depth for ChangesWaiting; leaving it out",
                            extra={"error": brief(exc)})
            else:
                values[WAITING_METRIC] = float(outbox.n + round(queued * self.packing.changes_per_message()))
        if not values:
            return None
        dimensions = [{"Name": "Deployment", "Value": self.settings.deployment_name}]
        try:
            self.cloudwatch.put_metric_data(Namespace=self.settings.cloudwatch_namespace, MetricData=[
                {"MetricName": name, "Value": value, "Unit": UNITS[name], "Dimensions": dimensions}
                for name, value in values.items()])
        except Exception as exc:
            log.warning("could not put the metrics; trying again next interval",
                        extra={"metrics": sorted(values), "error": brief(exc)})
            return None
        return values

    def _read_vacuum_horizon(self) -> change_log.VacuumHorizon | None:
        """The vacuum horizon's figures, or None (logged, rolled back) when they cannot
        be read; logs a warning while a transaction is held over
        HELD_TRANSACTION_WARN_SECONDS."""
        try:
            with self._work.transaction():
                horizon = change_log.vacuum_horizon(self._work)
        except Exception as exc:
            self._rollback()
            log.warning("could not read the oldest transaction's age; trying again next interval",
                        extra={"error": brief(exc), "sqlstate": getattr(exc, "sqlstate", None)})
            return None
        if horizon.oldest_transaction_age_s > HELD_TRANSACTION_WARN_SECONDS:
            log.warning("a transaction has been open for long; vacuum cannot remove the change log's dead rows "
                        "until it ends (docs/operations.md: held transactions)", extra={
                            "oldest_transaction_age_s": round(horizon.oldest_transaction_age_s),
                            "outbox_dead_tuples": horizon.outbox_dead_tuples})
        return horizon

    def _rollback(self) -> None:
        """Ends a failed transaction on the work connection, if it is still usable."""
        conn = self._work
        if conn is None or conn.closed or conn.broken:
            return
        try:
            conn.rollback()
        except Exception:
            pass  # a connection that cannot roll back is lost; the next statement says so

    def _connection_lost(self, exc: psycopg.Error) -> bool:
        """Whether `exc` means a connection is gone (reconnect), as opposed to a statement
        failing on a live one (roll back and carry on)."""
        for conn in (self._work, self._listen):
            if conn is None or conn.closed or conn.broken:
                return True
        state = exc.sqlstate
        if state is None:  # raised by the client: no server answered
            return isinstance(exc, psycopg.OperationalError)
        return state.startswith("08") or state in CONNECTION_LOST_STATES

    def _room_in_queue(self) -> bool:
        """Whether the jobs queue may take more messages; while it may not, logs once
        that pelican pauses, and once that it resumes. Raises what QueueGauge.room raises."""
        room = self.gauge.room()
        if room > 0:
            if self._paused:
                self._paused = False
                log.info("the jobs queue has room again; shipping", extra={"queued_messages": self.gauge.depth})
            return True
        if not self._paused:
            self._paused = True
            log.warning("the jobs queue is full; changes wait in the change log until emu catches up",
                        extra={"queued_messages": self.gauge.depth, "sent_since_read": self.gauge.sent_since,
                               "max_queued_messages": self.settings.max_queued_messages})
        return False

    def run(self) -> None:
        """Ships changes until a stop request (install_signal_handlers, or `stopping` set).
        Raises nothing a dependency raises: each failure is logged and retried after a
        backoff."""
        log.info("pelican started", extra={"database": self.database.redacted(), "queue": self.queues.jobs_queue_url})
        # An outage passes; a refusal repeats alike until someone fixes it, so it backs off further.
        outage, refused = Backoff(0.5, 10.0), Backoff(0.5, 60.0)
        failing = Backoff(0.5, 30.0)
        errors_in_a_row = 0
        poll = AdaptivePoll(self.settings.busy_poll_interval_seconds, self.settings.poll_interval_seconds)
        while not self.stopping.is_set():
            try:
                self._connect()
                # Before shipping: when the queue refuses every batch, the age must still go out.
                self.publish_metrics()
                if not self._room_in_queue():
                    self.stopping.wait(max(self.gauge.wait_s(), 0.05))
                    continue
                result = ship_batch(
                    self._work, self.sqs, self.queues.jobs_queue_url,
                    claim_limit=self.settings.claim_batch_size,
                    changes_per_message=self.settings.changes_per_message,
                )
                self.gauge.sent(result.messages)
                self.packing.shipped(result.changes_claimed, result.messages)
                outage.reset()
                refused.reset()
                failing.reset()
                errors_in_a_row = 0
                if result.changes_claimed:
                    poll.found_work()
                elif self._wait_for_wakeup(poll.found_nothing()):
                    poll.found_work()
            except SCHEMA_MISSING as exc:
                self._rollback()
                delay = outage.next_delay()
                log.warning("schema not found; waiting for the migration (pelican migrate)",
                            extra={"error": brief(str(exc).splitlines()[0]), "retry_in_s": delay})
                outage.wait(delay, self.stopping)
            except psycopg.Error as exc:
                if self._connection_lost(exc):
                    delay = outage.next_delay()
                    log.warning("database connection lost; reconnecting", extra={"error": brief(exc), "retry_in_s": delay})
                    self._disconnect()
                    outage.wait(delay, self.stopping)
                else:
                    # A statement timeout, a lock or serialization failure, a constraint: the
                    # connection is fine, and a reconnect would only repeat the statement slower.
                    self._rollback()
                    errors_in_a_row += 1
                    delay = failing.next_delay()
                    log.error("database error; rolled back, trying again", extra={
                        "error": brief(exc), "error_type": type(exc).__name__, "sqlstate": exc.sqlstate,
                        "retry_in_s": delay, "errors_in_a_row": errors_in_a_row})
                    if errors_in_a_row >= ERRORS_BEFORE_RECONNECT:
                        log.warning("database errors repeat; reconnecting", extra={"errors_in_a_row": errors_in_a_row})
                        self._disconnect()
                        errors_in_a_row = 0
                    failing.wait(delay, self.stopping)
            except SendRefused as exc:
                # Not an outage: every retry is refused alike, and no queue alarm fires.
                delay = refused.next_delay()
                log.error("SQS refused a message built by pelican; the change log is stuck until that is fixed",
                          extra={"error": brief(exc, 500), "retry_in_s": delay})
                refused.wait(delay, self.stopping)
            except (BotoCoreError, ClientError, SendFailed) as exc:
                delay = outage.next_delay()
                log.warning("queue unavailable; changes kept in the database", extra={"error": brief(exc), "retry_in_s": delay})
                outage.wait(delay, self.stopping)
            except Exception as exc:
                # No dependency may end the loop: the changes stay in the change log, and
                # a bug that fails every round shows as this error repeating.
                self._rollback()
                delay = failing.next_delay()
                log.error("unexpected error; rolled back, trying again", exc_info=True, extra={
                    "error": brief(exc), "error_type": type(exc).__name__, "retry_in_s": delay})
                failing.wait(delay, self.stopping)
        self._disconnect()
        log.info("pelican stopped")
