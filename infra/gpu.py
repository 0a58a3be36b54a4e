"""GPU hosts for emu: an ECS capacity provider over an Auto Scaling group."""
from __future__ import annotations

import base64
from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from infra import iam

ECS_INSTANCE_MANAGED_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEC2ContainerServiceforEC2Role"


def user_data(cluster_name: str) -> str:
    script = "\n".join(
        [
            "#!/bin/bash",
            f"echo ECS_CLUSTER={cluster_name} >> /etc/ecs/ecs.config",
            "echo ECS_ENABLE_GPU_SUPPORT=true >> /etc/ecs/ecs.config",
            "echo ECS_ENABLE_TASK_IAM_ROLE=true >> /etc/ecs/ecs.config",
            "",
        ]
    )
    return base64.b64encode(script.encode()).decode()


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
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("semsearch:compute:GpuCapacity", name, None, opts)
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
        ami = aws.ssm.get_parameter_output(name=ami_parameter)
        resource_tags = [
            {"resource_type": kind, "tags": dict(tags)} for kind in ("instance", "volume", "network-interface")
        ]
        template = aws.ec2.LaunchTemplate(
            name,
            image_id=ami.value,
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
