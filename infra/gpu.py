"""GPU hosts for emu: an ECS capacity provider over an Auto Scaling group."""
from __future__ import annotations

import base64
import math
import re
from typing import Any, Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.layer import component_type

ECS_INSTANCE_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"


# ECS agent settings for the GPU hosts.  ECS_AWSVPC_BLOCK_IMDS: awsvpc tasks cannot reach
# the instance metadata service, so a task can never borrow the host role's credentials;
# the hop limit of 1 in the launch template covers bridge-mode containers as well.
ECS_AGENT_CONFIG = (
    ("ECS_ENABLE_GPU_SUPPORT", "true"),
    ("ECS_ENABLE_TASK_IAM_ROLE", "true"),
    ("ECS_AWSVPC_BLOCK_IMDS", "true"),
)


def user_data(cluster_name: str) -> str:
    """Base64 user data that joins the host to the cluster with ``ECS_AGENT_CONFIG``."""
    lines = ["#!/bin/bash", f"echo ECS_CLUSTER={cluster_name} >> /etc/ecs/ecs.config"]
    lines += [f"echo {key}={value} >> /etc/ecs/ecs.config" for key, value in ECS_AGENT_CONFIG]
    script = "\n".join([*lines, ""])
    return base64.b64encode(script.encode()).decode()


# GPUs per instance of the usual ECS GPU families by size; every other size has one.
_MULTI_GPU_SIZES = {"12xlarge": 4, "24xlarge": 4, "48xlarge": 8, "metal": 8}
_KNOWN_FAMILIES = ("g4dn", "g5", "g6", "g6e")


def gpus_per_instance(instance_type: str) -> int:
    """GPUs of one instance of a g4dn/g5/g6/g6e type (others are refused: we cannot size them)."""
    family, _, size = instance_type.partition(".")
    if family not in _KNOWN_FAMILIES:
        raise ValueError(f"gpuInstanceType {instance_type!r}: only {', '.join(_KNOWN_FAMILIES)} are supported")
    return _MULTI_GPU_SIZES.get(size, 1)


def gpu_instances_for(instance_type: str, configured: int, max_tasks: int, gpus_per_task: int = 1) -> int:
    """Most GPU instances: `configured`, or when it is 0 as many as `max_tasks` emu tasks
    need on `instance_type`."""
    if configured < 0:
        raise ValueError("gpuMaxInstances must be positive, or 0 to derive it from emuMaxTasks")
    per_instance = gpus_per_instance(instance_type) // gpus_per_task
    return configured or math.ceil(max_tasks / per_instance)


def check_gpu_capacity(instance_type: str, max_instances: int, max_tasks: int, gpus_per_task: int = 1) -> None:
    """Fail at preview when autoscaling may ask for emu tasks no GPU host could place.

    ECS would leave such tasks PROVISIONING forever while the backlog grows.
    """
    slots = max_instances * (gpus_per_instance(instance_type) // gpus_per_task)
    if max_tasks > slots:
        raise ValueError(
            f"emuMaxTasks={max_tasks} cannot be placed: gpuMaxInstances={max_instances} x {instance_type} "
            f"hold {slots} emu task(s) of {gpus_per_task} GPU each; raise gpuMaxInstances or lower emuMaxTasks"
        )


AMI_ID = re.compile(r"ami-[0-9a-f]{8,17}")


def gpu_ami_warning(ami_id: str, ami_parameter: str, tier: str = "dev") -> str | None:
    """The warning for a floating AMI (``ami_id`` empty), or None when it is pinned.

    Raises ValueError on a pinned value that is no AMI id, and on a floating AMI in
    ``tier`` prod. The SSM "recommended" parameter moves whenever AWS publishes a new ECS
    GPU-optimized AMI, and every ``pulumi up`` would then roll a new launch template
    version onto the hosts it next starts, untested."""
    if ami_id:
        if not AMI_ID.fullmatch(ami_id):
            raise ValueError(f"gpuAmiId {ami_id!r} is not an AMI id (ami-<8 or 17 hex digits>)")
        return None
    if tier == "prod":
        raise ValueError("tier prod runs a pinned GPU AMI: set gpuAmiId (the current one: aws ssm get-parameter "
                         f"--name {ami_parameter}; docs/deploy.md, \"GPU AMI\")")
    return (f"gpuAmiId is not set: the GPU hosts use whatever AMI {ami_parameter} names at each "
            "pulumi up. Pin it (pulumi config set gpuAmiId ami-...; docs/deploy.md, \"GPU AMI\").")


class GpuCapacity(pulumi.ComponentResource):
    """ECS-managed scaling of GPU instances (ECS GPU-optimized AMI) for one cluster."""

    def __init__(
        self,
        name: str,
        *,
        cluster: aws.ecs.Cluster,
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_id: pulumi.Input[str],
        instance_type: str,
        max_instances: int,
        ami_parameter: str,
        root_volume_gib: int,
        ami_id: str = "",
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        """ami_id: the pinned AMI; empty reads the current one from SSM `ami_parameter`
        (see gpu_ami_warning)."""
        token = component_type("compute", "GpuCapacity")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = aws.iam.Role(
            f"{name}-instance",
            description="ECS container instances for GPU emu",
            assume_role_policy=iam.assume_role_policy("ec2.amazonaws.com"),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            f"{name}-instance-ecs", role=role.name, policy_arn=ECS_INSTANCE_MANAGED_POLICY, opts=child
        )
        profile = aws.iam.InstanceProfile(f"{name}-instance", role=role.name, opts=child)
        image_id = ami_id or aws.ssm.get_parameter_output(name=ami_parameter).value
        resource_tags: list[Any] = [
            {"resource_type": kind, "tags": dict(tags)} for kind in ("instance", "volume", "network-interface")
        ]
        template = aws.ec2.LaunchTemplate(
            name,
            image_id=image_id,
            instance_type=instance_type,
            iam_instance_profile={"arn": profile.arn},
            vpc_security_group_ids=[security_group_id],
            user_data=cluster.name.apply(user_data),
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,  # tasks use their task role, not the host's
            },
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {"volume_size": root_volume_gib, "volume_type": "gp3", "encrypted": "true",
                            "delete_on_termination": "true"},
                }
            ],
            monitoring={"enabled": True},
            tag_specifications=resource_tags,
            update_default_version=True,
            opts=child,
        )
        group = aws.autoscaling.Group(
            name,
            vpc_zone_identifiers=subnet_ids,
            min_size=0,
            max_size=max_instances,
            launch_template={"id": template.id, "version": "$Latest"},
            protect_from_scale_in=True,  # ECS decides which instance may go
            tags=[{"key": "AmazonECSManaged", "value": "true", "propagate_at_launch": True}],
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["desiredCapacity"]),
        )
        self.capacity_provider = aws.ecs.CapacityProvider(
            name,
            auto_scaling_group_provider={
                "auto_scaling_group_arn": group.arn,
                "managed_termination_protection": "ENABLED",
                "managed_draining": "ENABLED",
                "managed_scaling": {
                    "status": "ENABLED",
                    "target_capacity": 100,
                    "minimum_scaling_step_size": 1,
                    "maximum_scaling_step_size": max_instances,
                },
            },
            opts=child,
        )
        self.attachment = aws.ecs.ClusterCapacityProviders(
            name,
            cluster_name=cluster.name,
            capacity_providers=[self.capacity_provider.name],
            default_capacity_provider_strategies=[
                {"capacity_provider": self.capacity_provider.name, "weight": 1, "base": 0}
            ],
            opts=child,
        )
        self.register_outputs({"capacityProvider": self.capacity_provider.name})
