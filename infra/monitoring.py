"""Alarms on the system's own metrics (the AWS-published ones live next to their resources)."""
from __future__ import annotations

import pulumi
import pulumi_aws as aws

# Namespace and metric pelican publishes every poll interval (CLOUDWATCH_NAMESPACE,
# DEPLOYMENT_NAME); the task role may write only into this namespace.
METRICS_NAMESPACE = "ProductSearch"
UNSHIPPED_AGE_METRIC = "OldestUnshippedChangeAgeSeconds"
ALARM_PERIOD_SECONDS = 300


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
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description=("Changes wait in the outbox longer than expected, or pelican reports nothing: "
                           "pelican is down, stuck or cannot reach SQS"),
        namespace=METRICS_NAMESPACE,
        metric_name=UNSHIPPED_AGE_METRIC,
        dimensions={"Deployment": deployment},
        statistic="Maximum",
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=1,
        threshold=threshold_seconds,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="breaching",
        alarm_actions=[topic_arn],
        ok_actions=[topic_arn],
        opts=opts,
    )
