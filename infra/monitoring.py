"""Alarms on the system's own metrics, and on the database's (AWS/RDS, created by the data layer)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import pulumi
import pulumi_aws as aws

# Namespace and metric pelican publishes once per metric interval (CLOUDWATCH_NAMESPACE,
# DEPLOYMENT_NAME); the task role may write only into this namespace.
METRICS_NAMESPACE = "ProductSearch"
UNSHIPPED_AGE_METRIC = "OldestUnshippedChangeAgeSeconds"
# Changes captured but not yet indexed (unit Count), put by pelican with the same dimension:
# emu's autoscaling holds it per task.
CHANGES_WAITING_METRIC = "ChangesWaiting"
ALARM_PERIOD_SECONDS = 300


def topic_alarm(
    name: str,
    *,
    topic_arn: pulumi.Input[str],
    description: str,
    namespace: str,
    metric: str,
    threshold: pulumi.Input[float],
    dimensions: Mapping[str, pulumi.Input[str]] | None = None,
    statistic: str = "Maximum",
    comparison: str = "GreaterThanThreshold",
    period_seconds: int = ALARM_PERIOD_SECONDS,
    periods: int = 1,
    missing_data: str = "notBreaching",
    notify_ok: bool = True,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.cloudwatch.MetricAlarm:
    """A CloudWatch alarm on one metric that publishes to
    `topic_arn` when it fires and, with `notify_ok`, again when it clears.

    It fires when `statistic` over each `period_seconds` compares (`comparison`) with
    `threshold` for `periods` periods in a row; `missing_data` is CloudWatch's
    TreatMissingData ("breaching", "notBreaching", "missing", "ignore")."""
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=description,
        namespace=namespace,
        metric_name=metric,
        dimensions=dimensions,
        statistic=statistic,
        period=period_seconds,
        evaluation_periods=periods,
        threshold=threshold,
        comparison_operator=comparison,
        treat_missing_data=missing_data,
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn] if notify_ok else None,
        opts=opts,
    )


def unshipped_changes_alarm(
    name: str,
    *,
    deployment: str,
    threshold_seconds: int,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> aws.cloudwatch.MetricAlarm:
    """Alarm when the oldest change pelican has not shipped is too old, or pelican is silent.

    Missing data is breaching: a stopped or crash-looping pelican publishes nothing, and that
    is exactly when changes stop reaching the index.
    """
    if threshold_seconds <= 0:
        raise ValueError("unshippedChangeAlarmSeconds must be positive")
    return topic_alarm(
        name, topic_arn=topic_arn, opts=opts,
        description=("Changes wait in the outbox longer than expected, or pelican reports nothing: "
                     "pelican is down, stuck or cannot reach SQS"),
        namespace=METRICS_NAMESPACE, metric=UNSHIPPED_AGE_METRIC, dimensions={"Deployment": deployment},
        threshold=threshold_seconds, missing_data="breaching",
    )


# Database health pelican reads from pg_stat_activity and pg_stat_user_tables and puts with
# the same dimension: the age of the oldest open transaction (unit Seconds; it holds back
# vacuum everywhere in the database) and the outbox table's dead tuples (unit Count).
OLDEST_TRANSACTION_METRIC = "OldestTransactionAgeSeconds"
OUTBOX_DEAD_TUPLES_METRIC = "OutboxDeadTuples"
# Both alarms want the condition to last: one slow backfill or a vacuum about to run is no page.
VACUUM_ALARM_PERIOD_SECONDS = 300
VACUUM_ALARM_EVALUATION_PERIODS = 3


def vacuum_alarms(
    name: str,
    *,
    deployment: str,
    oldest_transaction_seconds: int,
    outbox_dead_tuples: int,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> dict[str, aws.cloudwatch.MetricAlarm]:
    """Two alarms on pelican's database metrics, keyed "oldest-transaction" and "outbox-dead-tuples".

    oldest_transaction_seconds: the oldest open transaction has been open longer than this
    (seconds, Maximum over each 5-minute period) for three periods in a row. While it stays
    open, vacuum can remove no row version newer than its snapshot, in any table: the
    outbox, which takes an insert and a delete per change, bloats first.
    outbox_dead_tuples: the outbox's dead tuples stayed above this count for three periods;
    autovacuum (by default once dead tuples pass 50 + 20% of the live rows) is held back or
    cannot keep up, and every claim reads past the dead versions.
    Missing data is not breaching: pelican being silent is the unshipped-changes alarm's job.
    Raises ValueError on a threshold that is not positive.
    """
    if oldest_transaction_seconds <= 0:
        raise ValueError("oldestTransactionAlarmSeconds must be positive")
    if outbox_dead_tuples <= 0:
        raise ValueError("outboxDeadTuplesAlarmCount must be positive")
    specs = {
        "oldest-transaction": (OLDEST_TRANSACTION_METRIC, oldest_transaction_seconds,
                               "A database transaction has stayed open too long: vacuum cannot clean up "
                               "behind it and the outbox bloats (pg_stat_activity shows which session)"),
        "outbox-dead-tuples": (OUTBOX_DEAD_TUPLES_METRIC, outbox_dead_tuples,
                               "The outbox keeps too many dead tuples: autovacuum is held back by an old "
                               "transaction or cannot keep up, and pelican's claims slow down"),
    }
    return {
        key: topic_alarm(
            f"{name}-{key}", topic_arn=topic_arn, opts=opts, description=description,
            namespace=METRICS_NAMESPACE, metric=metric, dimensions={"Deployment": deployment}, threshold=threshold,
            period_seconds=VACUUM_ALARM_PERIOD_SECONDS, periods=VACUUM_ALARM_EVALUATION_PERIODS,
        )
        for key, (metric, threshold, description) in specs.items()
    }


LOGIN_FAILURES_METRIC = "EditorLoginFailures"
# The frontend's JSON log line for a refused editor login (frontend.editing.authenticate).
LOGIN_FAILURE_PATTERN = '{ $.msg = "editor login failed" }'


def login_failures_alarm(
    name: str,
    *,
    log_group_name: pulumi.Input[str],
    deployment: str,
    threshold: int,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> aws.cloudwatch.MetricAlarm:
    """Counts failed editor logins from the frontend's logs (a metric filter on its JSON
    lines) and alarms when more than `threshold` happen in 5 minutes across all
    replicas: someone is guessing the editor password, or it was changed under a user."""
    if threshold <= 0:
        raise ValueError("loginFailureAlarmCount must be positive")
    # A filter's dimensions can only come from the log event, so the stack goes in the name.
    metric = f"{LOGIN_FAILURES_METRIC}-{deployment}"
    aws.cloudwatch.LogMetricFilter(
        name,
        log_group_name=log_group_name,
        pattern=LOGIN_FAILURE_PATTERN,
        metric_transformation={"name": metric, "namespace": METRICS_NAMESPACE, "value": "1",
                               "default_value": "0", "unit": "Count"},
        opts=opts,
    )
    return topic_alarm(
        name, topic_arn=topic_arn, opts=opts, notify_ok=False,
        description="Many failed editor logins: password guessing, or a changed password",
        namespace=METRICS_NAMESPACE, metric=metric, statistic="Sum", threshold=threshold,
    )


# --- the database (AWS/RDS metrics, per DBInstanceIdentifier) -----------------------------
# AWS docs ("Amazon CloudWatch metrics for Amazon RDS"): FreeStorageSpace and FreeableMemory
# are in bytes, DatabaseConnections is a count, and CPUCreditBalance (credits) is published
# only for burstable (db.t*) classes.
RDS_NAMESPACE = "AWS/RDS"
BYTES_PER_MIB = 1024 ** 2
BYTES_PER_GIB = 1024 ** 3


@dataclass(frozen=True)
class DatabaseAlarmArgs:
    """Thresholds of the database alarms; every alarm fires below (or, for connections,
    above) its threshold for the whole evaluation window.

    free_storage_gib: FreeStorageSpace under this. Storage autoscaling grows the volume
    when less than 10 % is free, up to dbMaxAllocatedStorage (AWS docs: "Managing capacity
    automatically with Amazon RDS storage autoscaling"); the alarm says it is running out
    anyway. freeable_memory_mib: FreeableMemory under this (the instance swaps).
    connections: DatabaseConnections over this; PostgreSQL's default max_connections on RDS
    is LEAST(DBInstanceClassMemory/9531392, 5000) (AWS docs: "Maximum number of database
    connections"), about 80 on a db.t4g.micro. cpu_credits: CPUCreditBalance under this,
    burstable classes only (a db.t4g.micro earns 12 credits an hour, AWS docs:
    "Burstable performance instances")."""

    free_storage_gib: int
    freeable_memory_mib: int
    connections: int
    cpu_credits: int

    def __post_init__(self) -> None:
        for key, value in (("dbFreeStorageAlarmGib", self.free_storage_gib),
                           ("dbFreeableMemoryAlarmMib", self.freeable_memory_mib),
                           ("dbConnectionsAlarmCount", self.connections),
                           ("dbCpuCreditAlarmCount", self.cpu_credits)):
            if value <= 0:
                raise ValueError(f"{key} must be positive")


def is_burstable(instance_class: str) -> bool:
    """db.t2/t3/t4g...: the classes that run on CPU credits."""
    return instance_class.startswith("db.t")


def database_alarms(
    name: str,
    *,
    identifier: pulumi.Input[str],
    instance_class: str,
    thresholds: DatabaseAlarmArgs,
    topic_arn: pulumi.Input[str],
    opts: pulumi.ResourceOptions | None = None,
) -> dict[str, aws.cloudwatch.MetricAlarm]:
    """Alarms (to `topic_arn`, on alarm and back to OK) on the RDS instance `identifier`:
    little free storage, little freeable memory, many connections, and for a burstable
    `instance_class` few CPU credits left. Keyed by metric name."""
    # (metric, threshold, comparison, evaluation periods of ALARM_PERIOD_SECONDS, description)
    specs = [
        ("FreeStorageSpace", thresholds.free_storage_gib * BYTES_PER_GIB, "LessThanThreshold", 1,
         f"Less than {thresholds.free_storage_gib} GiB of database storage free"),
        ("FreeableMemory", thresholds.freeable_memory_mib * BYTES_PER_MIB, "LessThanThreshold", 3,
         f"Less than {thresholds.freeable_memory_mib} MiB of database memory free for 15 minutes"),
        ("DatabaseConnections", thresholds.connections, "GreaterThanThreshold", 3,
         f"More than {thresholds.connections} database connections for 15 minutes"),
    ]
    if is_burstable(instance_class):
        specs.append(("CPUCreditBalance", thresholds.cpu_credits, "LessThanThreshold", 1,
                      f"Fewer than {thresholds.cpu_credits} CPU credits left: the database will be "
                      "throttled to its baseline"))
    alarms = {}
    for metric, threshold, comparison, periods, description in specs:
        alarms[metric] = topic_alarm(
            f"{name}-db-{metric}", topic_arn=topic_arn, opts=opts, description=description,
            namespace=RDS_NAMESPACE, metric=metric, dimensions={"DBInstanceIdentifier": identifier},
            statistic="Average" if metric != "DatabaseConnections" else "Maximum",
            threshold=threshold, comparison=comparison, periods=periods,
            # A stopped or rebooting instance reports nothing: keep the state it had.
            missing_data="missing",
        )
    return alarms
