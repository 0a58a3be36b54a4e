"""boto3 clients. AWS_ENDPOINT_URL (honoured by boto3 itself) points them at a local
SQS/SNS endpoint; on AWS it is unset and the task role's credentials apply."""

from __future__ import annotations

import boto3
from botocore.config import Config

from productsearch.settings import QueueSettings

_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=30)


def sqs_client(settings: QueueSettings):
    return boto3.client("sqs", region_name=settings.region, endpoint_url=settings.endpoint_url, config=_CONFIG)


def sns_client(settings: QueueSettings):
    return boto3.client("sns", region_name=settings.region, endpoint_url=settings.endpoint_url, config=_CONFIG)


def queue_depth(sqs, queue_url: str) -> dict[str, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {"visible": int(attrs.get("ApproximateNumberOfMessages", 0)), "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}
