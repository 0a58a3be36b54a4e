"""pelican's own settings (the `pelican run` loop), read from the environment by
productsearch.settings' reader like every other setting: a missing or malformed
value raises ConfigError naming the variable. The shared parts (database, queues,
index) are productsearch.settings' classes."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, ClassVar

from productsearch.settings import ConfigError, EnvSection, Var


class PelicanEnv(EnvSection):
    """The variables of PelicanSettings."""

    CLOUDWATCH_NAMESPACE: Annotated[str | None, Var(
        "where pelican puts OldestUnshippedChangeAgeSeconds and ChangesWaiting; unset: no metrics")] = None
    DEPLOYMENT_NAME: Annotated[str, Var("the metric's Deployment dimension")] = "local"
    PELICAN_METRIC_INTERVAL_SECONDS: Annotated[int, Var(
        "the least time between two metric puts", minimum=1, maximum=3600)] = 60
    PELICAN_POLL_INTERVAL_SECONDS: Annotated[float, Var(
        "the idle wait between two outbox claims", minimum=0.05)] = 0.5
    PELICAN_BUSY_POLL_INTERVAL_SECONDS: Annotated[float, Var(
        "the wait after the first empty claim, doubled up to the idle wait", minimum=0.01)] = 0.05
    PELICAN_CLAIM_BATCH_SIZE: Annotated[int, Var(
        "outbox rows claimed at once", minimum=1, maximum=10000)] = 1000
    PELICAN_CHANGES_PER_MESSAGE: Annotated[int, Var(
        "changes per SQS message", minimum=1, maximum=500)] = 150
    # AWS docs (SQS quotas): a FIFO queue holds at most 120,000 messages in flight.
    PELICAN_MAX_QUEUED_MESSAGES: Annotated[int, Var(
        "pelican stops shipping while the jobs queue holds this many messages or more (waiting plus in flight)",
        minimum=1, maximum=120000)] = 1000
    PELICAN_QUEUE_CHECK_INTERVAL_SECONDS: Annotated[float, Var(
        "the least time between two reads of the jobs queue's depth while shipping or paused",
        minimum=0.1, maximum=300)] = 5.0


@dataclass(frozen=True)
class PelicanSettings:
    """pelican's loop. With cloudwatch_namespace (CLOUDWATCH_NAMESPACE, unset: no
    metric) pelican puts OldestUnshippedChangeAgeSeconds, dimension Deployment =
    deployment_name (DEPLOYMENT_NAME, default "local"), at most once per
    metric_interval_seconds (PELICAN_METRIC_INTERVAL_SECONDS, default 60, 1..3600:
    CloudWatch's standard resolution is one minute, so putting more often costs
    requests and shows nothing more). ChangesWaiting (Count) goes in the same put:
    the change log's rows (exact up to productsearch.change_log.COUNT_CAP, else the
    statistics' estimate) plus the jobs queue's messages (waiting and in flight)
    times the mean changes per message of pelican's recent batches: an estimate of
    the changes not yet indexed, for scaling emu on.

    Backpressure: pelican claims nothing while the jobs queue holds
    max_queued_messages (PELICAN_MAX_QUEUED_MESSAGES, default 1000, 1..120000) or
    more messages, waiting and in flight together; the changes stay in the change
    log, which keeps them for as long as it takes, rather than in the queue, whose
    retention would drop them (14 days, messaging/). 1000 messages of up
    to 150 changes are about 150,000 changes, some 12 minutes of one CPU emu
    (~200 rows/s, docs/benchmarks.md) and about a minute and a half of a GPU one:
    plenty of work for emu never to wait for pelican, far within the retention, and
    far above the work each emu task holds in flight (EMU_MAX_CHANGES_IN_FLIGHT). The queue may pass the
    limit by one batch's messages per pelican replica. The depth costs an SQS
    request (GetQueueAttributes), so pelican reads it once when it starts, then only
    after using up the room its last reading showed, at most once per
    queue_check_interval_seconds (PELICAN_QUEUE_CHECK_INTERVAL_SECONDS, default 5,
    0.1..300) while it ships or is paused, and never while it is idle, plus once per
    metric put.

    Adaptive polling (pelican/service.py; writers send no NOTIFY, schema/005): after an
    empty claim pelican waits busy_poll_interval_seconds
    (PELICAN_BUSY_POLL_INTERVAL_SECONDS, default 0.05, at least 0.01), doubling the
    wait after each further empty claim up to poll_interval_seconds
    (PELICAN_POLL_INTERVAL_SECONDS, default 0.5, at least 0.05, not below the busy
    interval). The idle interval bounds an isolated change's wait (commit to claim)
    and sets an idle pelican's cost: one indexed claim per interval, 2 a second by
    default. A claim that finds changes, or a NOTIFY (backfill and recapture send one
    per batch), starts again from the busy interval.

    claim_batch_size (PELICAN_CLAIM_BATCH_SIZE, default 1000, 1..10000) and
    changes_per_message (PELICAN_CHANGES_PER_MESSAGE, default 150, 1..500): about 150
    typical rows (~350 bytes each) fill one 64 KiB SQS billing chunk, so a message
    costs one request; fuller messages also keep the queue short, and moto's SQS slows
    quadratically with queue length (docs/benchmarks.md). Raises ConfigError on a
    value out of range."""

    ENV_SECTIONS: ClassVar[tuple[type[EnvSection], ...]] = (PelicanEnv,)

    poll_interval_seconds: float
    claim_batch_size: int
    changes_per_message: int
    cloudwatch_namespace: str | None = None
    deployment_name: str = "local"
    metric_interval_seconds: int = 60
    busy_poll_interval_seconds: float = 0.05
    max_queued_messages: int = 1000
    queue_check_interval_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> PelicanSettings:
        """Raises ConfigError naming the variable that is malformed."""
        e = PelicanEnv.read(env)
        namespace = e.CLOUDWATCH_NAMESPACE
        # CloudWatch's limits: namespace up to 255 characters, a dimension value up to 1024.
        if namespace is not None and (len(namespace) > 255 or namespace.startswith(":") or namespace.startswith("AWS/")):
            raise ConfigError(f"CLOUDWATCH_NAMESPACE must be 1-255 characters, not starting with 'AWS/' or ':', got {namespace!r}")
        if len(e.DEPLOYMENT_NAME) > 1024:
            raise ConfigError("DEPLOYMENT_NAME must be at most 1024 characters")
        poll, busy = e.PELICAN_POLL_INTERVAL_SECONDS, e.PELICAN_BUSY_POLL_INTERVAL_SECONDS
        if busy > poll:
            raise ConfigError(f"PELICAN_BUSY_POLL_INTERVAL_SECONDS ({busy}) must not exceed "
                              f"PELICAN_POLL_INTERVAL_SECONDS ({poll})")
        return cls(
            cloudwatch_namespace=namespace,
            deployment_name=e.DEPLOYMENT_NAME,
            metric_interval_seconds=e.PELICAN_METRIC_INTERVAL_SECONDS,
            poll_interval_seconds=poll,
            busy_poll_interval_seconds=busy,
            claim_batch_size=e.PELICAN_CLAIM_BATCH_SIZE,
            changes_per_message=e.PELICAN_CHANGES_PER_MESSAGE,
            max_queued_messages=e.PELICAN_MAX_QUEUED_MESSAGES,
            queue_check_interval_seconds=e.PELICAN_QUEUE_CHECK_INTERVAL_SECONDS,
        )
