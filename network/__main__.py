"""network: the VPC every other layer lives in."""
from pathlib import Path

import pulumi

from infra.layer import bootstrap, require_region
from infra.network import Network

layer = bootstrap("network", Path(__file__).parent)
cfg = layer.config

network = Network(
    layer.prefix,
    cidr_block=cfg.get("vpcCidr"),
    availability_zones=cfg.get("availabilityZones"),
    nat_strategy=cfg.get("natGatewayStrategy"),
    vpc_endpoints=cfg.get("vpcEndpoints"),
    s3_gateway_endpoint=cfg.get("s3GatewayEndpoint"),
    region=require_region(),
    tags=layer.tags,
)

pulumi.export("vpcId", network.vpc_id)
pulumi.export("vpcCidrBlock", cfg.get("vpcCidr"))
pulumi.export("publicSubnetIds", network.public_subnet_ids)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("natGatewayStrategy", cfg.get("natGatewayStrategy"))
