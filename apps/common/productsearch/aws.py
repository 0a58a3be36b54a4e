"""boto3 clients. AWS_ENDPOINT_URL (honoured by boto3 itself) points them at a local
SQS/SNS endpoint; on AWS it is unset and the task role's credentials apply."""

from __future__ import annotations

import boto3
from botocore.config import Config

from productsearch.settings import QueueSettings

_CONFIG = Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=5, read_timeout=30)
# Read while connecting to the database: a few quick tries, so an unreachable endpoint
# fails that attempt and the caller's reconnect backoff takes over.
_SECRETS_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=5)


def sqs_client(settings: QueueSettings, *, timeout_s: float | None = None, attempts: int | None = None):
    """An SQS client; timeout_s (connect and read) and attempts tighten the defaults
    (5 s / 30 s, 8 attempts) for callers that must answer quickly, e.g. a web request."""
    config = _CONFIG
    if timeout_s is not None or attempts is not None:
        config = _CONFIG.merge(Config(connect_timeout=min(5, timeout_s or 5), read_timeout=timeout_s or 30,
                                      retries={"max_attempts": attempts or 8, "mode": "adaptive"}))
    return boto3.client("sqs", region_name=settings.region, endpoint_url=settings.aws_endpoint_url, config=config)


def sns_client(settings: QueueSettings):
    """An SNS client in the queues' region and endpoint (emu's dead-letter notices)."""
    return boto3.client("sns", region_name=settings.region, endpoint_url=settings.aws_endpoint_url, config=_CONFIG)


# Metrics are put from pelican's loop: one quick retry, so a CloudWatch outage cannot
# hold up shipping changes.
_METRICS_CONFIG = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=5)


def cloudwatch_client(settings: QueueSettings):
    """A CloudWatch client in the queues' region and endpoint (pelican's metric)."""
    return boto3.client("cloudwatch", region_name=settings.region, endpoint_url=settings.aws_endpoint_url, config=_METRICS_CONFIG)


def secrets_client(region: str, endpoint_url: str | None):
    """A Secrets Manager client (the database secret: productsearch.db)."""
    return boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url, config=_SECRETS_CONFIG)


def queue_depth(sqs, queue_url: str) -> dict[str, int]:
    """{"visible": messages waiting, "in_flight": messages received and not yet
    deleted} of a queue, as SQS approximates them (one GetQueueAttributes request).
    Raises botocore's errors as the request does."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {"visible": int(attrs.get("ApproximateNumberOfMessages", 0)), "in_flight": int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))}
