"""The VPC: awsx subnets and NAT, plus optional endpoints that spare NAT traffic."""
from __future__ import annotations

from typing import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_awsx as awsx

from infra.layer import component_type

NAT_STRATEGIES = {
    "Single": awsx.ec2.NatGatewayStrategy.SINGLE,
    "OnePerAz": awsx.ec2.NatGatewayStrategy.ONE_PER_AZ,
}

# Interface endpoints private Fargate tasks use: image pulls (ecr.api, ecr.dkr),
# the jobs queue, secrets injection, log shipping and pelican's metrics (monitoring).
# Each costs per hour in every AZ (docs/infrastructure.md, "Monthly cost").
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "sqs", "secretsmanager", "logs", "monitoring")


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[Sequence[str]]
    private_subnet_ids: pulumi.Output[Sequence[str]]

    def __init__(
        self,
        name: str,
        *,
        cidr_block: str,
        availability_zones: int,
        nat_strategy: str,
        vpc_endpoints: bool,
        region: str,
        s3_gateway_endpoint: bool = True,
        tags: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("network", "Network")
        super().__init__(token, name, None, opts)
        if availability_zones not in (2, 3):
            raise ValueError("availabilityZones must be 2 or 3")
        if nat_strategy not in NAT_STRATEGIES:
            raise ValueError(f"natGatewayStrategy must be one of {sorted(NAT_STRATEGIES)}")
        child = pulumi.ResourceOptions(parent=self)

        # S3 is a gateway endpoint, free of charge (AWS PrivateLink pricing): ECR serves image
        # layers from S3, so every image pull otherwise pays NAT data processing.
        endpoint_specs = []
        if s3_gateway_endpoint:
            endpoint_specs.append(
                awsx.ec2.VpcEndpointSpecArgs(
                    service_name=f"com.amazonaws.{region}.s3",
                    vpc_endpoint_type="Gateway",
                )
            )

        self.vpc = awsx.ec2.Vpc(
            name,
            cidr_block=cidr_block,
            number_of_availability_zones=availability_zones,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            subnet_strategy=awsx.ec2.SubnetAllocationStrategy.AUTO,
            subnet_specs=[
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PUBLIC, cidr_mask=22),
                awsx.ec2.SubnetSpecArgs(type=awsx.ec2.SubnetType.PRIVATE, cidr_mask=20),
            ],
            nat_gateways=awsx.ec2.NatGatewayConfigurationArgs(strategy=NAT_STRATEGIES[nat_strategy]),
            vpc_endpoint_specs=endpoint_specs or None,
            # Auto: gateway endpoints get the VPC's route tables filled in.
            vpc_endpoint_strategy=awsx.ec2.VpcEndpointStrategy.AUTO if endpoint_specs else None,
            tags=dict(tags),
            opts=child,
        )
        self.vpc_id = self.vpc.vpc_id
        self.public_subnet_ids = self.vpc.public_subnet_ids
        self.private_subnet_ids = self.vpc.private_subnet_ids
        self.endpoint_security_group_id: pulumi.Output[str] | None = None

        if vpc_endpoints:
            sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints",
                description="HTTPS from inside the VPC to interface endpoints",
                vpc_id=self.vpc_id,
                opts=child,
            )
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-endpoints-https",
                security_group_id=sg.id,
                description="HTTPS from the VPC",
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ipv4=cidr_block,
                opts=child,
            )
            for service in INTERFACE_ENDPOINT_SERVICES:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}",
                    vpc_id=self.vpc_id,
                    service_name=f"com.amazonaws.{region}.{service}",
                    vpc_endpoint_type="Interface",
                    private_dns_enabled=True,
                    subnet_ids=self.private_subnet_ids,
                    security_group_ids=[sg.id],
                    opts=child,
                )
            self.endpoint_security_group_id = sg.id

        self.register_outputs(
            {
                "vpcId": self.vpc_id,
                "publicSubnetIds": self.public_subnet_ids,
                "privateSubnetIds": self.private_subnet_ids,
            }
        )
