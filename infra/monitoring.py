"""Alarms on the system's own metrics (the AWS-published ones live next to their resources)."""
from __future__ import annotations

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
    return aws.cloudwatch.MetricAlarm(
        name,
        alarm_description="Many failed editor logins: password guessing, or a changed password",
        namespace=METRICS_NAMESPACE,
        metric_name=metric,
        statistic="Sum",
        period=ALARM_PERIOD_SECONDS,
        evaluation_periods=1,
        threshold=threshold,
        comparison_operator="GreaterThanThreshold",
        treat_missing_data="notBreaching",
        alarm_actions=[topic_arn],
        opts=opts,
    )
