"""ECS task definitions: what one container needs, and its roles, logs and definition.

Services (infra.ecs.AppService) and one-off tasks share TaskResources, so both get the
same least-privilege shape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Protocol, Sequence

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.layer import component_type

Grant = tuple  # (sid, actions, resource ARNs[, IAM condition])


class ContainerImage(Protocol):
    """An image to run, by digest, and the ECR repository it is pulled from
    (infra.images.ServiceImage): the execution role may pull from that repository only."""

    @property
    def image_ref(self) -> pulumi.Input[str]: ...

    @property
    def repository_arn(self) -> pulumi.Input[str]: ...


def env_value(value) -> str:
    """Render one environment value.

    Numbers read through a StackReference arrive as floats (5432.0); libpq and
    friends want ``5432``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def env_list(env: Mapping[str, pulumi.Input]) -> pulumi.Output[list]:
    """ECS's environment list, sorted by name. A value that resolves to None (an
    optional upstream output, e.g. data's pineconeNextIndexHost) leaves its variable
    out rather than setting it to "None"."""
    keys = sorted(env)
    return pulumi.Output.all(*[env[k] for k in keys]).apply(
        lambda values: [{"name": k, "value": env_value(v)} for k, v in zip(keys, values, strict=True) if v is not None]
    )


def secret_ref(secret_arn: pulumi.Input[str], json_key: str | None = None) -> pulumi.Output[str]:
    """``valueFrom`` for ECS: the ARN, or ``<arn>:<jsonKey>::`` for one key of a JSON secret."""
    arn = pulumi.Output.from_input(secret_arn)
    return arn if json_key is None else arn.apply(lambda a: f"{a}:{json_key}::")


@dataclass
class Gpu:
    """Run on an EC2 capacity provider with this many GPUs per task."""

    capacity_provider: pulumi.Input[str]
    count: int = 1
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


@dataclass(frozen=True)
class Runtime:
    """How the container lives and dies on ECS.

    stop_timeout_seconds: SIGTERM to SIGKILL (ECS's default is 30 s; Fargate allows at
    most 120 s); the app must be told the same number to plan its drain.
    read_only_root: the image's filesystem cannot be written; `scratch_path` is then the
    one writable directory (a task volume on the task's ephemeral storage), and
    ephemeral_storage_gib sizes that storage (Fargate: 21 to 200 GiB)."""

    stop_timeout_seconds: int | None = None
    read_only_root: bool = False
    scratch_path: str | None = None
    ephemeral_storage_gib: int | None = None

    def __post_init__(self) -> None:
        if self.stop_timeout_seconds is not None and not 2 <= self.stop_timeout_seconds <= 120:
            raise ValueError("a container's stopTimeout must be between 2 and 120 seconds (Fargate's maximum)")
        if self.ephemeral_storage_gib is not None and not 21 <= self.ephemeral_storage_gib <= 200:
            raise ValueError("Fargate ephemeral storage must be between 21 and 200 GiB")
        if self.read_only_root and not self.scratch_path:
            raise ValueError("a read-only root filesystem needs a writable scratch_path")


SCRATCH_VOLUME = "scratch"


@dataclass
class TaskSpec:
    """What one container needs to run: image, sizes, environment, secrets and permissions.

    cpu in ECS CPU units (1024 = one vCPU), memory in MiB. secrets: variable name to
    ``valueFrom`` (secret_ref); secret_arns: the secrets the execution role may read for
    them. task_grants: what the task role may call, as (sid, actions, resource ARNs[,
    condition]) grants (infra.iam.policy_output)."""

    container: str
    image: ContainerImage
    cpu: int
    memory: int
    environment: Mapping[str, pulumi.Input]
    task_grants: Sequence[Grant]
    log_group_name: str
    log_retention_days: int
    region: str
    secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    secret_arns: Sequence[pulumi.Input[str]] = ()
    port: int | None = None
    gpu: Gpu | None = None
    runtime: Runtime = field(default_factory=Runtime)


class TaskResources:
    """Log group, execution and task roles, and the task definition, under ``parent``.

    Shared by services and one-off tasks so both get the same least-privilege shape.
    """

    def __init__(self, name: str, spec: TaskSpec, parent: pulumi.Resource):
        child = pulumi.ResourceOptions(parent=parent)
        container, region, gpu, port, runtime = spec.container, spec.region, spec.gpu, spec.port, spec.runtime
        account_id = aws.get_caller_identity_output().account_id

        self.log_group = aws.cloudwatch.LogGroup(
            name, name=spec.log_group_name, retention_in_days=spec.log_retention_days, opts=child
        )

        self.execution_role = aws.iam.Role(
            f"{name}-execution",
            description=f"ECS agent for {container}: pull its image, write its logs, read its secrets",
            assume_role_policy=iam.ecs_task_trust(account_id, region, task_role=False),
            opts=child,
        )
        aws.iam.RolePolicy(
            f"{name}-execution",
            role=self.execution_role.id,
            policy=iam.policy_output(
                iam.execution_grants(spec.image.repository_arn, self.log_group.arn, spec.secret_arns)),
            opts=child,
        )
        self.task_role = aws.iam.Role(
            f"{name}-task",
            description=f"What {container} itself may call",
            assume_role_policy=iam.ecs_task_trust(account_id, region, task_role=True),
            opts=child,
        )
        if spec.task_grants:
            aws.iam.RolePolicy(
                f"{name}-task",
                role=self.task_role.id,
                policy=iam.policy_output(spec.task_grants),
                opts=child,
            )

        secrets = spec.secrets
        secret_keys = sorted(secrets)
        secret_list = pulumi.Output.all(*[secrets[k] for k in secret_keys]).apply(
            lambda refs: [{"name": k, "valueFrom": r} for k, r in zip(secret_keys, refs, strict=True)]
        )

        def container_definitions(args):
            image_ref, env, secret_values, group = args
            definition = {
                "name": container,
                "image": image_ref,
                "essential": True,
                "environment": env,
                "secrets": secret_values,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {
                        "awslogs-group": group,
                        "awslogs-region": region,
                        "awslogs-stream-prefix": container,
                    },
                },
            }
            if port is not None:
                definition["portMappings"] = [{"containerPort": port, "protocol": "tcp"}]
            if gpu is not None:
                definition["resourceRequirements"] = [{"type": "GPU", "value": str(gpu.count)}]
            if runtime.stop_timeout_seconds is not None:
                definition["stopTimeout"] = runtime.stop_timeout_seconds
            if runtime.read_only_root:
                definition["readonlyRootFilesystem"] = True
            if runtime.scratch_path:
                definition["mountPoints"] = [{"sourceVolume": SCRATCH_VOLUME, "containerPath": runtime.scratch_path,
                                              "readOnly": False}]
            return json.dumps([definition])

        self.task_definition = aws.ecs.TaskDefinition(
            name,
            family=name,
            network_mode="awsvpc",
            requires_compatibilities=["EC2"] if gpu else ["FARGATE"],
            cpu=str(spec.cpu),
            memory=str(spec.memory),
            execution_role_arn=self.execution_role.arn,
            task_role_arn=self.task_role.arn,
            runtime_platform=None if gpu else {"operating_system_family": "LINUX", "cpu_architecture": "X86_64"},
            volumes=[{"name": SCRATCH_VOLUME}] if runtime.scratch_path else None,
            ephemeral_storage=({"size_in_gib": runtime.ephemeral_storage_gib}
                               if runtime.ephemeral_storage_gib and not gpu else None),
            container_definitions=pulumi.Output.all(
                spec.image.image_ref, env_list(spec.environment), secret_list, self.log_group.name
            ).apply(container_definitions),
            opts=child,
        )


class OneOffTask(pulumi.ComponentResource):
    """A task definition with its own roles and logs but no service: run with ``aws ecs run-task``."""

    def __init__(self, name: str, spec: TaskSpec, opts: pulumi.ResourceOptions | None = None):
        token = component_type("compute", "OneOffTask")
        super().__init__(token, name, None, opts)
        task = TaskResources(name, spec, self)
        self.log_group = task.log_group
        self.task_role = task.task_role
        self.execution_role = task.execution_role
        self.task_definition = task.task_definition
        self.register_outputs({"taskDefinitionArn": self.task_definition.arn})
