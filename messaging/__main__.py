"""messaging: the queue between pelican and emu, and who hears about dead letters."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi  # noqa: E402

from infra.layer import bootstrap, require_region  # noqa: E402
from infra.messaging import DeadLetterAlerts, JobQueues  # noqa: E402

layer = bootstrap("messaging", Path(__file__).parent)
cfg = layer.config

queues = JobQueues(
    layer.prefix,
    worst_batch_seconds=cfg.get("emuWorstBatchSeconds"),
    retention_seconds=cfg.get("jobRetentionSeconds"),
    max_receive_count=cfg.get("maxReceiveCount"),
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
