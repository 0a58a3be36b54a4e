import json

import pytest

from harness import ALARM, QUEUE, run_layer
from infra.messaging import MAX_RETENTION_SECONDS, visibility_timeout


def queues(run):
    return run.one(QUEUE, "-jobs"), run.one(QUEUE, "-dlq")


def test_jobs_queue_encrypted_long_polling_sized_to_emu(messaging_run):
    jobs, _ = queues(messaging_run)
    assert jobs.inputs["sqsManagedSseEnabled"] is True
    assert jobs.inputs["receiveWaitTimeSeconds"] == 20
    assert jobs.inputs["visibilityTimeoutSeconds"] == visibility_timeout(120) == 270


def test_both_queues_keep_messages_14_days_the_sqs_maximum(messaging_run):
    # Once SQS holds a job pelican has deleted its outbox rows: an expired job is a lost change.
    jobs, dlq = queues(messaging_run)
    assert jobs.inputs["messageRetentionSeconds"] == dlq.inputs["messageRetentionSeconds"] == 1_209_600
    assert MAX_RETENTION_SECONDS == 1_209_600


def test_retention_beyond_what_sqs_allows_is_refused_at_preview():
    from harness import run_layer

    for bad in (59, 1_209_601):
        with pytest.raises(Exception, match="jobRetentionSeconds must be between 60 and 1209600"):
            run_layer("messaging", {"jobRetentionSeconds": bad}, stack="badretention")


def test_both_queues_are_fifo_with_per_group_throughput(messaging_run):
    # One message group per product partition: SQS hands a group to one emu at a time,
    # so an older state can never be written after a newer one.
    for queue in queues(messaging_run):
        assert queue.inputs["fifoQueue"] is True
        assert queue.inputs["deduplicationScope"] == "messageGroup"
        assert queue.inputs["fifoThroughputLimit"] == "perMessageGroupId"


def test_visibility_timeout_outlasts_worst_batch():
    for worst in (1, 30, 120, 900):
        assert visibility_timeout(worst) >= 2 * worst
    assert visibility_timeout(10 ** 6) == 12 * 3600
    with pytest.raises(ValueError):
        visibility_timeout(0)


def test_dlq_keeps_14_days_and_redrive_is_wired(messaging_run):
    jobs, dlq = queues(messaging_run)
    assert dlq.inputs["messageRetentionSeconds"] == 14 * 24 * 3600
    assert dlq.inputs["sqsManagedSseEnabled"] is True
    assert json.loads(jobs.inputs["redrivePolicy"]) == {
        "deadLetterTargetArn": dlq.outputs["arn"], "maxReceiveCount": 5}
    allow = messaging_run.one("aws:sqs/redriveAllowPolicy:RedriveAllowPolicy")
    assert allow.inputs["queueUrl"] == dlq.outputs["url"]
    assert json.loads(allow.inputs["redriveAllowPolicy"]) == {
        "redrivePermission": "byQueue", "sourceQueueArns": [jobs.outputs["arn"]]}


def test_topic_encrypted_with_a_key_cloudwatch_may_use(messaging_run):
    key = messaging_run.one("aws:kms/key:Key")
    topic = messaging_run.one("aws:sns/topic:Topic")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    policy = json.loads(key.inputs["policy"])
    cw = [s for s in policy["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cw and set(cw[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}


def test_alarms_publish_to_the_topic(messaging_run):
    jobs, dlq = queues(messaging_run)
    topic_arn = messaging_run.one("aws:sns/topic:Topic").outputs["arn"]
    depth = messaging_run.one(ALARM, "dlq-depth").inputs
    assert (depth["namespace"], depth["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert depth["dimensions"] == {"QueueName": dlq.outputs["name"]}
    assert depth["comparisonOperator"] == "GreaterThanThreshold" and depth["threshold"] == 0
    age = messaging_run.one(ALARM, "oldest-job").inputs
    assert age["metricName"] == "ApproximateAgeOfOldestMessage"
    assert age["dimensions"] == {"QueueName": jobs.outputs["name"]}
    assert age["threshold"] == 900
    for alarm in (depth, age):
        assert alarm["alarmActions"] == [topic_arn]
        assert alarm["okActions"] == [topic_arn]


def test_email_subscription_only_when_configured(messaging_run, messaging_quiet_run):
    sub = messaging_run.one("aws:sns/topicSubscription:TopicSubscription")
    assert sub.inputs["protocol"] == "email" and sub.inputs["endpoint"] == "oncall@example.com"
    assert sub.inputs["topic"] == messaging_run.one("aws:sns/topic:Topic").outputs["arn"]
    assert messaging_quiet_run.of_type("aws:sns/topicSubscription:TopicSubscription") == []


def test_exports(messaging_run):
    jobs, dlq = queues(messaging_run)
    e = messaging_run.exports
    assert e["jobsQueueUrl"] == jobs.outputs["url"] and e["jobsQueueArn"] == jobs.outputs["arn"]
    assert e["dlqUrl"] == dlq.outputs["url"] and e["dlqArn"] == dlq.outputs["arn"]
    assert e["topicArn"] == messaging_run.one("aws:sns/topic:Topic").outputs["arn"]
    assert e["jobsVisibilityTimeoutSeconds"] == jobs.inputs["visibilityTimeoutSeconds"]
    assert set(e) == {"jobsQueueUrl", "jobsQueueArn", "jobsQueueName", "jobsVisibilityTimeoutSeconds",
                      "dlqUrl", "dlqArn", "dlqName",
                      "topicArn", "topicKmsKeyArn"}


def test_queues_are_protected_unless_the_stack_says_otherwise(messaging_run):
    queues = messaging_run.of_type("aws:sqs/queue:Queue")
    assert len(queues) == 2
    assert all(messaging_run.opts(q.typ, q.name).protect is True for q in queues)
    unprotected = run_layer("messaging", {"protectStatefulResources": False}, stack="unprotected")
    assert all(unprotected.opts(q.typ, q.name).protect is False for q in unprotected.of_type("aws:sqs/queue:Queue"))
