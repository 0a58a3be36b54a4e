"""The jobs queue, its dead-letter queue, and the alerting around them."""
from __future__ import annotations

import json
import math

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.layer import component_type
from infra.monitoring import topic_alarm

# AWS docs (SQS API, CreateQueue: MessageRetentionPeriod): 60 s to 1,209,600 s (14 days).
MIN_RETENTION_SECONDS = 60
MAX_RETENTION_SECONDS = 14 * 24 * 3600
# The DLQ keeps a dead letter as long as SQS allows. On a FIFO queue the move to the DLQ
# resets a message's enqueue timestamp (AWS docs: "Setting-up dead-letter queue
# retention"), so a DLQ as long as the jobs queue still gets the full 14 days.
DLQ_RETENTION_SECONDS = MAX_RETENTION_SECONDS
LONG_POLL_SECONDS = 20  # the SQS maximum
MAX_VISIBILITY_SECONDS = 12 * 3600


def visibility_timeout(worst_batch_seconds: int) -> int:
    """Visibility timeout that outlasts emu's slowest batch with room to spare.

    Twice the worst batch plus a 30 s margin, so a slow batch is not handed to a
    second worker while the first is still upserting.
    """
    if worst_batch_seconds <= 0:
        raise ValueError("emuWorstBatchSeconds must be positive")
    return min(MAX_VISIBILITY_SECONDS, int(math.ceil(worst_batch_seconds * 2 + 30)))


# FIFO with high throughput: ordering and exclusivity are per message group (one group
# per product partition, productsearch.jobs.partition_of), and each group is
# throttled on its own rather than the queue as a whole (AWS docs: "High throughput
# for FIFO queues"). A FIFO queue's DLQ must be FIFO too.
FIFO_ARGS = {"fifo_queue": True, "deduplication_scope": "messageGroup", "fifo_throughput_limit": "perMessageGroupId"}


class JobQueues(pulumi.ComponentResource):
    """Jobs queue (pelican -> emu) and its DLQ: FIFO, both with SSE-SQS encryption.

    FIFO is what guarantees an older state of a product never lands after a newer
    one: SQS gives a message group to one emu task at a time. Moving an existing
    stack from the earlier standard queues replaces both queues (a queue cannot turn
    FIFO): stop pelican, let emu drain the old queue, `pulumi up`, then start pelican."""

    def __init__(
        self,
        name: str,
        *,
        worst_batch_seconds: int,
        retention_seconds: int,
        max_receive_count: int,
        protect: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """protect: Pulumi refuses to delete or replace either queue (``protect``). Pelican
        deletes a change's outbox rows once its job is sent, so the jobs in a queue exist
        nowhere else: a replaced queue loses them until ``reconcile --repair``."""
        if not MIN_RETENTION_SECONDS <= retention_seconds <= MAX_RETENTION_SECONDS:
            raise ValueError(f"jobRetentionSeconds must be between {MIN_RETENTION_SECONDS} and "
                             f"{MAX_RETENTION_SECONDS} (SQS's limits), got {retention_seconds}")
        token = component_type("messaging", "JobQueues")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stateful = pulumi.ResourceOptions(parent=self, protect=protect)
        self.dlq = aws.sqs.Queue(
            f"{name}-dlq",
            message_retention_seconds=DLQ_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            **FIFO_ARGS,
            opts=stateful,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-jobs",
            message_retention_seconds=retention_seconds,
            visibility_timeout_seconds=visibility_timeout(worst_batch_seconds),
            receive_wait_time_seconds=LONG_POLL_SECONDS,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dlq.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receive_count})
            ),
            **FIFO_ARGS,
            opts=stateful,
        )
        # Only the jobs queue may use this DLQ.
        aws.sqs.RedriveAllowPolicy(
            f"{name}-dlq-allow",
            queue_url=self.dlq.url,
            redrive_allow_policy=self.queue.arn.apply(
                lambda arn: json.dumps({"redrivePermission": "byQueue", "sourceQueueArns": [arn]})
            ),
            opts=child,
        )
        self.register_outputs({"queueUrl": self.queue.url, "dlqUrl": self.dlq.url})


def alarm_source(account_id: str, region: str) -> dict:
    """Condition: the CloudWatch service acts for an alarm of this account and region only."""
    return iam.source_condition(account_id, f"arn:aws:cloudwatch:{region}:{account_id}:alarm:*")


def topic_key_policy(account_id: str, region: str) -> str:
    """Key policy: the account administers the key; this account's alarms may encrypt messages."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountAdministers",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
                    "Resource": "*",
                    "Condition": alarm_source(account_id, region),
                },
            ],
        },
        sort_keys=True,
    )


def topic_policy(topic_arn: str, account_id: str, region: str) -> str:
    """Topic policy: CloudWatch may publish for this account's alarms; the account's own
    principals keep what their IAM policies grant them."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CloudWatchAlarmsPublish",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": alarm_source(account_id, region),
                },
            ],
        },
        sort_keys=True,
    )


class DeadLetterAlerts(pulumi.ComponentResource):
    """Encrypted SNS topic for dead letters, plus alarms that publish to it."""

    def __init__(
        self,
        name: str,
        *,
        queues: JobQueues,
        region: str,
        alert_email: str,
        oldest_message_age_seconds: int,
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("messaging", "DeadLetterAlerts")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        account_id = aws.get_caller_identity_output().account_id
        # A customer managed key: alarms cannot publish to a topic under aws/sns.
        self.key = aws.kms.Key(
            f"{name}-topic",
            description="Encrypts the dead-letter SNS topic",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=account_id.apply(lambda account: topic_key_policy(account, region)),
            opts=child,
        )
        self.topic = aws.sns.Topic(
            f"{name}-dead-letters",
            kms_master_key_id=self.key.arn,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-dead-letters",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, account_id).apply(
                lambda v: topic_policy(v[0], v[1], region)),
            opts=child,
        )
        if alert_email:
            aws.sns.TopicSubscription(
                f"{name}-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=alert_email,
                opts=child,
            )
        # SQS pushes its queue metrics to CloudWatch once a minute (AWS docs: "Available
        # CloudWatch metrics for Amazon SQS").
        self.dlq_alarm = topic_alarm(
            f"{name}-dlq-depth", topic_arn=self.topic.arn, opts=child,
            description="Messages arrived in the dead-letter queue",
            namespace="AWS/SQS", metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": queues.dlq.name}, threshold=0, period_seconds=60,
        )
        self.age_alarm = topic_alarm(
            f"{name}-oldest-job", topic_arn=self.topic.arn, opts=child,
            description="Jobs are waiting longer than expected: emu is down or too slow",
            namespace="AWS/SQS", metric="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": queues.queue.name}, threshold=oldest_message_age_seconds,
            period_seconds=60, periods=5,
        )
        self.register_outputs({"topicArn": self.topic.arn})
