"""IAM policy documents as plain data, so tests can read exactly what is granted.

Every statement names its actions one by one and its resources by ARN.  The
only ``"*"`` resources are ``ecr:GetAuthorizationToken`` and
``cloudwatch:PutMetricData``, which AWS does not allow to be scoped by ARN; the
latter is held to one namespace by a condition.
"""
from __future__ import annotations

import json
from typing import Iterable, Sequence

import pulumi

ECS_TASKS = "ecs-tasks.amazonaws.com"

SQS_SEND = ["sqs:SendMessage", "sqs:GetQueueAttributes"]
SQS_CONSUME = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
]
SQS_READ_ATTRS = ["sqs:GetQueueAttributes"]
SNS_PUBLISH = ["sns:Publish"]
KMS_FOR_ENCRYPTED_TOPIC = ["kms:GenerateDataKey", "kms:Decrypt"]
ECR_PULL = [
    "ecr:BatchCheckLayerAvailability",
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
]
LOGS_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]
SECRETS_READ = ["secretsmanager:GetSecretValue"]


CLOUDWATCH_PUT_METRICS = ["cloudwatch:PutMetricData"]


def assume_role_policy(service: str, condition: dict | None = None) -> str:
    """Trust policy letting one AWS service assume the role, optionally under a condition."""
    stmt: dict = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if condition:
        stmt["Condition"] = condition
    return json.dumps({"Version": "2012-10-17", "Statement": [stmt]}, sort_keys=True)


def source_condition(account_id: str, source_arn: str | None = None) -> dict:
    """``aws:SourceAccount`` (and ``aws:SourceArn``): a service may act only for this account.

    This is the confused-deputy guard AWS recommends for service principals: without it,
    the service could be steered into using our role or key on someone else's behalf.
    """
    condition: dict = {"StringEquals": {"aws:SourceAccount": account_id}}
    if source_arn:
        condition["ArnLike"] = {"aws:SourceArn": source_arn}
    return condition


def ecs_task_trust(account_id: pulumi.Input[str], region: str, *, task_role: bool) -> pulumi.Output[str]:
    """Trust policy for an ECS task role or task execution role of this account.

    Task roles also pin ``aws:SourceArn`` to this account's ECS resources in the region, as the
    ECS guide for task roles shows; execution roles carry only ``aws:SourceAccount``, the key
    ECS documents for every role it assumes.
    """
    def render(account: str) -> str:
        source_arn = f"arn:aws:ecs:{region}:{account}:*" if task_role else None
        return assume_role_policy(ECS_TASKS, source_condition(account, source_arn))

    return pulumi.Output.from_input(account_id).apply(render)


def statement(actions: Sequence[str], resources: Iterable[str], sid: str | None = None,
              condition: dict | None = None) -> dict:
    """One Allow statement; ``condition`` is an IAM Condition block."""
    stmt = {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if sid:
        stmt["Sid"] = sid
    if condition:
        stmt["Condition"] = condition
    return stmt


def document(statements: Sequence[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def policy_output(grants: Sequence[tuple]) -> pulumi.Output[str]:
    """Build a JSON policy from ``(sid, actions, resource ARNs[, condition])`` whose ARNs may be Outputs."""
    resolved = [pulumi.Output.all(*grant[2]) for grant in grants]

    def render(arn_lists):
        return document(
            [statement(grant[1], arns, grant[0], grant[3] if len(grant) > 3 else None)
             for grant, arns in zip(grants, arn_lists, strict=True)]
        )

    return pulumi.Output.all(*resolved).apply(render)


def put_metrics_grant(namespace: str) -> tuple:
    """``cloudwatch:PutMetricData`` only into one namespace (the action has no resource ARN)."""
    return ("PutMetrics", CLOUDWATCH_PUT_METRICS, ["*"],
            {"StringEquals": {"cloudwatch:namespace": namespace}})


def execution_grants(
    repository_arn: pulumi.Input[str],
    log_group_arn: pulumi.Input[str],
    secret_arns: Sequence[pulumi.Input[str]],
):
    """What the ECS agent needs to start one service's task: its image, its log group, its secrets."""
    log_streams = pulumi.Output.from_input(log_group_arn).apply(lambda arn: f"{arn}:log-stream:*")
    grants = [
        ("EcrToken", ["ecr:GetAuthorizationToken"], ["*"]),
        ("EcrPull", ECR_PULL, [repository_arn]),
        ("Logs", LOGS_WRITE, [log_streams]),
    ]
    if secret_arns:
        grants.append(("Secrets", SECRETS_READ, list(secret_arns)))
    return grants
