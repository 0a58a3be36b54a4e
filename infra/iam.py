"""IAM policy documents as plain data, so tests can read exactly what is granted.

Every statement names its actions one by one and its resources by ARN.  The
only ``"*"`` resource is ``ecr:GetAuthorizationToken``, which AWS does not
allow to be scoped.
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


def assume_role_policy(service: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": service},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )


def statement(actions: Sequence[str], resources: Iterable[str], sid: str | None = None) -> dict:
    stmt = {"Effect": "Allow", "Action": list(actions), "Resource": list(resources)}
    if sid:
        stmt["Sid"] = sid
    return stmt


def document(statements: Sequence[dict]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


def policy_output(grants: Sequence[tuple[str, Sequence[str], Sequence[pulumi.Input[str]]]]) -> pulumi.Output[str]:
    """Build a JSON policy from ``(sid, actions, resource ARNs)`` whose ARNs may be Outputs."""
    resolved = [pulumi.Output.all(*resources) for _, _, resources in grants]

    def render(arn_lists):
        return document(
            [statement(actions, arns, sid) for (sid, actions, _), arns in zip(grants, arn_lists, strict=True)]
        )

    return pulumi.Output.all(*resolved).apply(render)


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
