"""ECS building blocks: a cluster, and one service with its roles, logs and scaling."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.layer import component_type

Grant = tuple  # (sid, actions, resource ARNs[, IAM condition])


CONTAINER_INSIGHTS_SETTINGS = ("auto", "all", "emu")


def container_insights_apps(setting: str, tier: str) -> frozenset[str]:
    """The apps whose clusters run Container Insights for the ``containerInsights`` config.

    emu's always do: its scaling divides by Container Insights' DesiredTaskCount. "auto"
    adds the frontend's and pelican's in the prod tier only, where their per-task CPU,
    memory and network graphs are worth the custom-metric bill; elsewhere AWS/ECS's free
    per-service CPU and memory utilisation is enough. Raises ValueError on another setting.
    """
    if setting not in CONTAINER_INSIGHTS_SETTINGS:
        raise ValueError(f"containerInsights must be one of {CONTAINER_INSIGHTS_SETTINGS}, got {setting!r}")
    if setting == "all" or (setting == "auto" and tier == "prod"):
        return frozenset({"frontend", "pelican", "emu"})
    return frozenset({"emu"})


def ecs_cluster(name: str, *, container_insights: bool,
                opts: pulumi.ResourceOptions | None = None) -> aws.ecs.Cluster:
    """An ECS cluster, with Container Insights (standard, billed per metric) on or off."""
    return aws.ecs.Cluster(
        name, settings=[{"name": "containerInsights", "value": "enabled" if container_insights else "disabled"}],
        opts=opts)


@dataclass
class FargateSpot:
    """Run a Fargate service's tasks beyond `on_demand_base` on Fargate Spot.

    `depends_on`: the cluster's capacity provider association (FARGATE and FARGATE_SPOT),
    which must exist before the service names those providers."""

    on_demand_base: int
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.on_demand_base < 0:
            raise ValueError("emuOnDemandTasks must not be negative")

    def strategies(self) -> list[dict]:
        """The service's capacity provider strategy: the base on FARGATE, the rest on Spot."""
        return [{"capacity_provider": "FARGATE", "weight": 0, "base": self.on_demand_base},
                {"capacity_provider": "FARGATE_SPOT", "weight": 1, "base": 0}]


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


@dataclass
class LoadBalancing:
    """Register the service in a target group once ``depends_on`` (its listeners) exist."""

    target_group_arn: pulumi.Input[str]
    container_port: int
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

# Container Insights (always on emu's cluster, container_insights_apps) publishes a service's task counts;
# the free AWS/ECS namespace has only its CPU and memory utilisation.
CONTAINER_INSIGHTS = "ECS/ContainerInsights"
TASKS_METRIC = "DesiredTaskCount"
# Out within a minute of a signal rising; in only after five calm minutes.
SCALE_OUT_COOLDOWN_SECONDS = 60
SCALE_IN_COOLDOWN_SECONDS = 300


@dataclass(frozen=True)
class ScalingSignal:
    """A CloudWatch metric that target tracking holds at `target`.

    name: the policy's name suffix. statistic: over each minute; several tasks publishing
    the same system-wide figure (every pelican reads the same outbox) call for Maximum, not Sum.
    per_task: the metric is divided by the service's DesiredTaskCount (metric math over
    Container Insights), so `target` is an amount per task. Desired rather than running
    tasks: target tracking changes capacity in proportion to the metric's distance from
    the target, and with desired tasks in the divisor the metric falls as soon as tasks
    are asked for; with running tasks it would stay high while they start (a GPU host
    boots for minutes) and ask for more again at each cooldown, up to the maximum."""

    name: str
    namespace: str
    metric_name: str
    dimensions: Mapping[str, pulumi.Input[str]]
    target: float
    statistic: str = "Maximum"
    per_task: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if self.target <= 0:
            raise ValueError(f"the {self.name} scaling target must be positive, got {self.target}")

    def metric_specification(self, cluster_name: pulumi.Input[str], service_name: pulumi.Input[str]) -> Any:
        """The policy's customized_metric_specification."""
        dimensions = [{"name": k, "value": v} for k, v in sorted(self.dimensions.items())]
        if not self.per_task:
            return {"namespace": self.namespace, "metric_name": self.metric_name,
                    "dimensions": dimensions, "statistic": self.statistic}
        return {"metrics": [
            {"id": "work", "label": self.label or self.metric_name, "return_data": False,
             "metric_stat": {"metric": {"namespace": self.namespace, "metric_name": self.metric_name,
                                        "dimensions": dimensions},
                             "stat": self.statistic}},
            {"id": "tasks", "label": "Desired tasks", "return_data": False,
             "metric_stat": {"metric": {"namespace": CONTAINER_INSIGHTS, "metric_name": TASKS_METRIC,
                                        "dimensions": [{"name": "ClusterName", "value": cluster_name},
                                                       {"name": "ServiceName", "value": service_name}]},
                             "stat": "Average"}},
            {"id": "per_task", "label": f"{self.label or self.metric_name} per task",
             "expression": "work / tasks", "return_data": True},
        ]}


@dataclass
class TaskSpec:
    """What one container needs to run: image, sizes, environment, secrets and permissions."""

    container: str
    image: pulumi.Input[str]
    repository_arn: pulumi.Input[str]
    cpu: int
    memory: int
    environment: Mapping[str, pulumi.Input]
    secrets: Mapping[str, pulumi.Input[str]]
    secret_arns: Sequence[pulumi.Input[str]]
    task_grants: Sequence[Grant]
    log_group_name: str
    log_retention_days: int
    region: str
    port: int | None = None
    gpu: Gpu | None = None
    runtime: Runtime = field(default_factory=Runtime)


class _TaskResources:
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
                iam.execution_grants(spec.repository_arn, self.log_group.arn, spec.secret_arns)),
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
                spec.image, env_list(spec.environment), secret_list, self.log_group.name
            ).apply(container_definitions),
            opts=child,
        )


class OneOffTask(pulumi.ComponentResource):
    """A task definition with its own roles and logs but no service: run with ``aws ecs run-task``."""

    def __init__(self, name: str, spec: TaskSpec, opts: pulumi.ResourceOptions | None = None):
        token = component_type("compute", "OneOffTask")
        super().__init__(token, name, None, opts)
        task = _TaskResources(name, spec, self)
        self.log_group = task.log_group
        self.task_role = task.task_role
        self.execution_role = task.execution_role
        self.task_definition = task.task_definition
        self.register_outputs({"taskDefinitionArn": self.task_definition.arn})


class AppService(pulumi.ComponentResource):
    """One app on ECS: log group, execution and task roles, task definition, service.

    The service waits for steady state, so a deploy whose tasks crash-loop (and that the
    circuit breaker rolls back) fails ``pulumi up`` instead of reporting success.

    Capacity: `gpu` (its EC2 capacity provider), else `spot` (a FARGATE base, the rest on
    FARGATE_SPOT), else the FARGATE launch type. Raises ValueError for both gpu and spot.
    """

    def __init__(
        self,
        name: str,
        *,
        container: str,
        cluster: aws.ecs.Cluster,
        image: pulumi.Input[str],
        repository_arn: pulumi.Input[str],
        cpu: int,
        memory: int,
        environment: Mapping[str, pulumi.Input],
        secrets: Mapping[str, pulumi.Input[str]],
        secret_arns: Sequence[pulumi.Input[str]],
        task_grants: Sequence[Grant],
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_ids: Sequence[pulumi.Input[str]],
        log_group_name: str,
        log_retention_days: int,
        region: str,
        desired_count: int,
        deploy_timeout_minutes: int,
        autoscaled: bool = False,
        port: int | None = None,
        load_balancing: LoadBalancing | None = None,
        gpu: Gpu | None = None,
        spot: FargateSpot | None = None,
        runtime: Runtime | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("compute", "AppService")
        super().__init__(token, name, None, opts)
        if deploy_timeout_minutes <= 0:
            raise ValueError("serviceDeployTimeoutMinutes must be positive")
        if gpu is not None and spot is not None:
            raise ValueError(f"{name}: a GPU service runs on its EC2 capacity provider, not Fargate Spot")
        self.cluster = cluster
        self.logical_name = name
        spec = TaskSpec(
            container=container, image=image, repository_arn=repository_arn, cpu=cpu, memory=memory,
            environment=environment, secrets=secrets, secret_arns=secret_arns, task_grants=task_grants,
            log_group_name=log_group_name, log_retention_days=log_retention_days, region=region,
            port=port, gpu=gpu, runtime=runtime or Runtime(),
        )
        task = _TaskResources(name, spec, self)
        self.log_group = task.log_group
        self.execution_role = task.execution_role
        self.task_role = task.task_role
        self.task_definition = task.task_definition

        depends_on: list[pulumi.Resource] = []
        service_args: dict = {}
        if gpu is not None:
            service_args["capacity_provider_strategies"] = [
                {"capacity_provider": gpu.capacity_provider, "weight": 1, "base": 0}
            ]
            depends_on += list(gpu.depends_on)
        elif spot is not None:
            service_args["capacity_provider_strategies"] = spot.strategies()
            depends_on += list(spot.depends_on)
        else:
            service_args["launch_type"] = "FARGATE"
        if load_balancing is not None:
            service_args["load_balancers"] = [
                {
                    "target_group_arn": load_balancing.target_group_arn,
                    "container_name": container,
                    "container_port": load_balancing.container_port,
                }
            ]
            service_args["health_check_grace_period_seconds"] = 120
            depends_on += list(load_balancing.depends_on)

        self.service = aws.ecs.Service(
            name,
            cluster=cluster.arn,
            task_definition=self.task_definition.arn,
            desired_count=desired_count,
            network_configuration={
                "subnets": subnet_ids,
                "security_groups": list(security_group_ids),
                "assign_public_ip": False,
            },
            deployment_circuit_breaker={"enable": True, "rollback": True},
            enable_ecs_managed_tags=True,
            propagate_tags="SERVICE",
            wait_for_steady_state=True,
            **service_args,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=depends_on,
                # Application Auto Scaling owns the count once it is attached.
                ignore_changes=["desiredCount"] if autoscaled else None,
                # Bounds the wait: a GPU host has to boot before emu's first task.
                custom_timeouts=pulumi.CustomTimeouts(
                    create=f"{deploy_timeout_minutes}m", update=f"{deploy_timeout_minutes}m"),
            ),
        )
        self.register_outputs({"serviceName": self.service.name})

    def autoscale(self, *, min_tasks: int, max_tasks: int,
                  signals: Sequence[ScalingSignal]) -> aws.appautoscaling.Target:
        """Application Auto Scaling between `min_tasks` and `max_tasks`, one target tracking
        policy per signal; it follows whichever policy asks for the most tasks.

        `min_tasks` is at least 1: a per-task signal divides by the task count, so at zero
        tasks it has no value and nothing would ever scale the service out again."""
        if min_tasks < 1:
            raise ValueError(f"{self.logical_name}: keep at least one task (min_tasks={min_tasks})")
        if max_tasks < min_tasks:
            raise ValueError(f"{self.logical_name}: max_tasks ({max_tasks}) is below min_tasks ({min_tasks})")
        if not signals:
            raise ValueError(f"{self.logical_name}: autoscaling needs at least one signal")
        name = self.logical_name
        child = pulumi.ResourceOptions(parent=self)
        resource_id = pulumi.Output.concat("service/", self.cluster.name, "/", self.service.name)
        target = aws.appautoscaling.Target(
            f"{name}-scaling",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=resource_id,
            min_capacity=min_tasks,
            max_capacity=max_tasks,
            opts=child,
        )
        for signal in signals:
            aws.appautoscaling.Policy(
                f"{name}-{signal.name}",
                policy_type="TargetTrackingScaling",
                service_namespace=target.service_namespace,
                scalable_dimension=target.scalable_dimension,
                resource_id=target.resource_id,
                target_tracking_scaling_policy_configuration={
                    "customized_metric_specification": signal.metric_specification(
                        self.cluster.name, self.service.name),
                    "target_value": signal.target,
                    "scale_in_cooldown": SCALE_IN_COOLDOWN_SECONDS,
                    "scale_out_cooldown": SCALE_OUT_COOLDOWN_SECONDS,
                },
                opts=child,
            )
        return target
