"""The pelican service loop: claim and ship, then wait for the next poll or a NOTIFY.

Writers send no NOTIFY (a pending notification serialises commits cluster-wide,
schema/005), so pelican finds their changes by polling, adaptively (AdaptivePoll):
it claims again at once while claims find changes, then waits
PELICAN_BUSY_POLL_INTERVAL_SECONDS after the first empty claim, the wait doubling
after each further empty claim up to PELICAN_POLL_INTERVAL_SECONDS. The
idle poll therefore bounds how long an isolated change waits before it is claimed,
and is what an idle pelican costs: one indexed claim per idle poll. pelican still
LISTENs on product_changes: backfill and recapture NOTIFY once per batch they
capture, which wakes it at once.

Survives a dropped connection or a database restart by reconnecting with backoff
(a silent drop is noticed within DATABASE_DEAD_CONNECTION_SECONDS, see
productsearch.db), a database without the schema by waiting for the migration, and
an unreachable SQS endpoint by keeping the changes (uncommitted claims roll back)
and trying again. SIGTERM lets the batch in hand finish, then exits.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from psycopg import errors

from pelican.outbox import SendFailed, SendRefused, ship_batch
from productsearch import aws, db
from productsearch.lifecycle import stop_on_signals
from productsearch.logs import brief
from productsearch.retry import Backoff
from productsearch.settings import DatabaseSettings, PelicanSettings, QueueSettings

log = logging.getLogger(__name__)
CHANNEL = "product_changes"
# What a database without the schema, or with a migration half applied, answers.
# Waiting rather than migrating: on ECS a one-off task migrates
# (scripts/aws/run-migration.sh), and pelican's role need not have DDL rights.
SCHEMA_MISSING = (errors.UndefinedTable, errors.UndefinedFunction, errors.UndefinedColumn)
AGE_METRIC = "OldestUnshippedChangeAgeSeconds"
OLDEST_AGE_SQL = "SELECT EXTRACT(EPOCH FROM now() - min(captured_at))::float8 AS age_s FROM product_changes"


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

    def publish_oldest_change_age(self) -> float | None:
        """Puts OldestUnshippedChangeAgeSeconds (seconds since the oldest captured_at in
        product_changes, 0 when it is empty) to CloudWatch, at most once per
        metric_interval_seconds; an alarm on it (missing data included) tells that
        pelican has stopped shipping. Returns the age put, or None when nothing was put.
        A failed put is logged and dropped; a database error propagates like any other."""
        if self.cloudwatch is None or time.monotonic() - self._metric_put_at < self.settings.metric_interval_seconds:
            return None
        with self._work.transaction():
            age_s = self._work.execute(OLDEST_AGE_SQL).fetchone()["age_s"] or 0.0
        age_s = max(0.0, age_s)
        self._metric_put_at = time.monotonic()
        try:
            self.cloudwatch.put_metric_data(Namespace=self.settings.cloudwatch_namespace, MetricData=[{
                "MetricName": AGE_METRIC, "Value": age_s, "Unit": "Seconds",
                "Dimensions": [{"Name": "Deployment", "Value": self.settings.deployment_name}],
            }])
        except (BotoCoreError, ClientError) as exc:
            log.warning("could not put the change-age metric; trying again next interval",
                        extra={"metric": AGE_METRIC, "error": brief(exc)})
            return None
        return age_s

    def run(self) -> None:
        log.info("pelican started", extra={"database": self.database.redacted(), "queue": self.queues.jobs_queue_url})
        # An outage passes; a refusal repeats alike until someone fixes it, so it backs off further.
        outage, refused = Backoff(0.5, 10.0), Backoff(0.5, 60.0)
        poll = AdaptivePoll(self.settings.busy_poll_interval_seconds, self.settings.poll_interval_seconds)
        while not self.stopping.is_set():
            try:
                self._connect()
                # Before shipping: when the queue refuses every batch, the age must still go out.
                self.publish_oldest_change_age()
                result = ship_batch(
                    self._work, self.sqs, self.queues.jobs_queue_url,
                    claim_limit=self.settings.claim_batch_size,
                    changes_per_message=self.settings.changes_per_message,
                )
                outage.reset()
                refused.reset()
                if result.changes_claimed:
                    poll.found_work()
                elif self._wait_for_wakeup(poll.found_nothing()):
                    poll.found_work()
            except SCHEMA_MISSING as exc:
                delay = outage.next_delay()
                log.warning("schema not found; waiting for the migration (pelican migrate)",
                            extra={"error": brief(str(exc).splitlines()[0]), "retry_in_s": delay})
                outage.wait(delay, self.stopping)
            except psycopg.OperationalError as exc:
                delay = outage.next_delay()
                log.warning("database connection lost; reconnecting", extra={"error": brief(exc), "retry_in_s": delay})
                self._disconnect()
                outage.wait(delay, self.stopping)
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
        self._disconnect()
        log.info("pelican stopped")
