"""ECS building blocks: a cluster, and one service with its capacity, load balancing and scaling.

The task each service runs is defined in infra.task_definition."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra.layer import component_type
from infra.task_definition import TaskResources, TaskSpec


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


@dataclass
class LoadBalancing:
    """Register the service in a target group once ``depends_on`` (its listeners) exist."""

    target_group_arn: pulumi.Input[str]
    container_port: int
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


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


class AppService(pulumi.ComponentResource):
    """One app on ECS: log group, execution and task roles, task definition, service.

    The service waits for steady state, so a deploy whose tasks crash-loop (and that the
    circuit breaker rolls back) fails ``pulumi up`` instead of reporting success.

    Capacity: the spec's `gpu` (its EC2 capacity provider), else `spot` (a FARGATE base,
    the rest on FARGATE_SPOT), else the FARGATE launch type. Raises ValueError for both gpu
    and spot.
    """

    def __init__(
        self,
        name: str,
        spec: TaskSpec,
        *,
        cluster: aws.ecs.Cluster,
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_ids: Sequence[pulumi.Input[str]],
        desired_count: int,
        deploy_timeout_minutes: int,
        autoscaled: bool = False,
        load_balancing: LoadBalancing | None = None,
        spot: FargateSpot | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("compute", "AppService")
        super().__init__(token, name, None, opts)
        if deploy_timeout_minutes <= 0:
            raise ValueError("serviceDeployTimeoutMinutes must be positive")
        gpu = spec.gpu
        if gpu is not None and spot is not None:
            raise ValueError(f"{name}: a GPU service runs on its EC2 capacity provider, not Fargate Spot")
        self.cluster = cluster
        self.logical_name = name
        task = TaskResources(name, spec, self)
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
                    "container_name": spec.container,
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
