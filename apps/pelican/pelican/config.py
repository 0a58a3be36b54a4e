"""pelican's own settings (the `pelican run` loop). The metric's namespace and
dimension are environment variables (compute sets them: the fields with a
validation_alias); the loop's timing and
batch sizes are `Tuning`: constructor parameters and `pelican run` options, which no
deployment sets. The shared parts (database, queues, index) are
productsearch.settings' classes."""

from __future__ import annotations


from pydantic import Field, field_validator, model_validator
from pydantic_settings import CliSuppress

from productsearch.env import EnvTuning
from productsearch.settings import DatabaseTimeouts


class PelicanSettings(EnvTuning):
    """pelican's loop. With cloudwatch_namespace (CLOUDWATCH_NAMESPACE, unset: no
    metric) pelican puts OldestUnshippedChangeAgeSeconds, dimension Deployment =
    deployment_name (DEPLOYMENT_NAME), at most once per metric_interval_seconds.
    ChangesWaiting (Count) goes in the same put: the change log's rows (exact up to
    productsearch.change_log.COUNT_CAP, else the statistics' estimate) plus the jobs
    queue's messages (waiting and in flight) times the mean changes per message of
    pelican's recent batches: an estimate of the changes not yet indexed, for scaling
    emu on.

    Backpressure: pelican claims nothing while the jobs queue holds
    max_queued_messages or more messages, waiting and in flight together; the changes
    stay in the change log, which keeps them for as long as it takes, rather than in
    the queue, whose retention would drop them (14 days, messaging/). 1000 messages of
    up to 150 changes are about 150,000 changes, some 12 minutes of one CPU emu (~200
    rows/s, docs/benchmarks.md) and about a minute and a half of a GPU one: plenty of
    work for emu never to wait for pelican, far within the retention, and far above
    the work each emu task holds in flight (emu's max_changes_in_flight). The queue may
    pass the limit by one batch's messages per pelican replica. The depth costs an SQS
    request (GetQueueAttributes), so pelican reads it once when it starts, then only
    after using up the room its last reading showed, at most once per
    queue_check_interval_seconds while it ships or is paused, and never while it is
    idle, plus once per metric put.

    Adaptive polling (pelican/service.py; writers send no NOTIFY, schema/current.sql): after an
    empty claim pelican waits busy_poll_interval_seconds, doubling the wait after each
    further empty claim up to poll_interval_seconds. The idle interval bounds an
    isolated change's wait (commit to claim) and sets an idle pelican's cost: one
    indexed claim per interval, 2 a second by default. A claim that finds changes, or
    a NOTIFY (backfill and recapture send one per batch), starts again from the busy
    interval.

    claim_batch_size and changes_per_message: about 150 typical rows (~350 bytes
    each) fill one 64 KiB SQS billing chunk, so a message costs one request; fuller
    messages also keep the queue short, and moto's SQS slows quadratically with queue
    length (docs/benchmarks.md). database: the connections' timeouts (DatabaseTimeouts)."""

    cloudwatch_namespace: CliSuppress[str | None] = Field(
        None, validation_alias="CLOUDWATCH_NAMESPACE",
        description="where pelican puts OldestUnshippedChangeAgeSeconds and ChangesWaiting; unset: no metrics")
    deployment_name: CliSuppress[str] = Field(
        "local", validation_alias="DEPLOYMENT_NAME", description="the metric's Deployment dimension")
    # CloudWatch's standard resolution is one minute: putting more often costs
    # requests and shows nothing more.
    metric_interval_seconds: int = Field(60, ge=1, le=3600, description="the least time between two metric puts")
    # An isolated change waits up to the idle interval: beyond a minute the index is no
    # longer fresh, whatever the saving.
    poll_interval_seconds: float = Field(0.5, ge=0.05, le=60, description="the idle wait between two outbox claims")
    busy_poll_interval_seconds: float = Field(
        0.05, ge=0.01, le=60, description="the wait after the first empty claim, doubled up to the idle wait")
    claim_batch_size: int = Field(1000, ge=1, le=10000, description="outbox rows claimed at once")
    changes_per_message: int = Field(150, ge=1, le=500, description="changes per SQS message")
    # AWS docs (SQS quotas): a FIFO queue holds at most 120,000 messages in flight.
    max_queued_messages: int = Field(
        1000, ge=1, le=120000,
        description="pelican stops shipping while the jobs queue holds this many messages (waiting plus in flight)")
    queue_check_interval_seconds: float = Field(
        5.0, ge=0.1, le=300,
        description="the least time between two reads of the jobs queue's depth while shipping or paused")
    database: DatabaseTimeouts = DatabaseTimeouts()

    @field_validator("cloudwatch_namespace")
    @classmethod
    def _namespace(cls, namespace: str | None) -> str | None:
        # CloudWatch's limits: a namespace of up to 255 characters, a dimension value up to 1024.
        if namespace is not None and (len(namespace) > 255 or namespace.startswith((":", "AWS/"))):
            raise ValueError(f"CLOUDWATCH_NAMESPACE must be 1-255 characters, not starting with 'AWS/' or ':', "
                             f"got {namespace!r}")
        return namespace

    @field_validator("deployment_name")
    @classmethod
    def _deployment(cls, name: str) -> str:
        if len(name) > 1024:
            raise ValueError("DEPLOYMENT_NAME must be at most 1024 characters")
        return name

    @model_validator(mode="after")
    def _busy_within_idle(self) -> PelicanSettings:
        busy, poll = self.busy_poll_interval_seconds, self.poll_interval_seconds
        if busy > poll:
            raise ValueError(f"--busy-poll-interval-seconds ({busy}) must not exceed --poll-interval-seconds ({poll})")
        return self
