"""messaging: the queue between pelican and emu, and who hears about dead letters."""
from pathlib import Path

import pulumi

from infra.layer import bootstrap, require_region
from infra.messaging import DeadLetterAlerts, JobQueues

layer = bootstrap("messaging", Path(__file__).parent)
cfg = layer.config

queues = JobQueues(
    layer.prefix,
    worst_batch_seconds=cfg.get("emuWorstBatchSeconds"),
    retention_seconds=cfg.get("jobRetentionSeconds"),
    max_receive_count=cfg.get("maxReceiveCount"),
    protect=cfg.get("protectStatefulResources"),
)
alerts = DeadLetterAlerts(
    layer.prefix,
    queues=queues,
    region=require_region(),
    alert_email=cfg.get("alertEmail"),
    oldest_message_age_seconds=cfg.get("oldestMessageAgeAlarmSeconds"),
)

pulumi.export("jobsQueueUrl", queues.queue.url)
pulumi.export("jobsQueueArn", queues.queue.arn)
pulumi.export("jobsQueueName", queues.queue.name)
pulumi.export("jobsVisibilityTimeoutSeconds", queues.queue.visibility_timeout_seconds)
pulumi.export("dlqUrl", queues.dlq.url)
pulumi.export("dlqArn", queues.dlq.arn)
pulumi.export("dlqName", queues.dlq.name)
pulumi.export("topicArn", alerts.topic.arn)
pulumi.export("topicKmsKeyArn", alerts.key.arn)
