"""Security groups of the compute layer and every rule between them.

internet -> ALB (listener ports only) -> frontend (its port only);
frontend, pelican, operator -> database (5432, to its security group only);
every task -> TCP 443 anywhere (AWS APIs, Pinecone); emu, pelican and the
operator accept nothing.
"""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_aws as aws

from infra.database import POSTGRES_PORT
from infra.layer import component_type

HTTPS_PORT = 443
# Who talks to PostgreSQL; emu only reads the queue and writes the index.
DATABASE_CLIENTS = ("frontend", "pelican", "operator")


class ServiceFirewall(pulumi.ComponentResource):
    """One security group per role and the only rules between them (no inline rules)."""

    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        db_security_group_id: pulumi.Input[str],
        listener_ports: Sequence[int],
        alb_ingress_cidr: str,
        frontend_port: int,
        opts: pulumi.ResourceOptions | None = None,
    ):
        token = component_type("compute", "ServiceFirewall")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(f"{name}-{role}", description=description, vpc_id=vpc_id, opts=child)

        self.alb = group("alb", "Public load balancer")
        self.frontend = group("frontend", "Frontend tasks")
        self.pelican = group("pelican", "Pelican tasks (no inbound)")
        self.emu = group("emu", "Emu tasks and GPU hosts (no inbound)")
        self.operator = group("operator", "One-off operator tasks: migrate, reconcile, redrive (no inbound)")
        tasks = {"frontend": self.frontend, "pelican": self.pelican, "emu": self.emu, "operator": self.operator}

        def allow(rule: type, rule_name: str, group: pulumi.Input[str], description: str, port: int,
                  **peer: pulumi.Input[str]) -> None:
            # One TCP port per rule; `peer` is cidr_ipv4 or referenced_security_group_id.
            rule(f"{name}-{rule_name}", security_group_id=group, description=description,
                 ip_protocol="tcp", from_port=port, to_port=port, opts=child, **peer)

        ingress, egress = aws.vpc.SecurityGroupIngressRule, aws.vpc.SecurityGroupEgressRule
        for port in listener_ports:
            allow(ingress, f"alb-in-{port}", self.alb.id, f"Internet to the ALB listener on {port}", port,
                  cidr_ipv4=alb_ingress_cidr)
        allow(egress, "alb-to-frontend", self.alb.id, "ALB to frontend tasks", frontend_port,
              referenced_security_group_id=self.frontend.id)
        allow(ingress, "frontend-from-alb", self.frontend.id, "ALB to the frontend port", frontend_port,
              referenced_security_group_id=self.alb.id)
        for role in DATABASE_CLIENTS:
            allow(ingress, f"db-from-{role}", db_security_group_id, f"{role} to PostgreSQL", POSTGRES_PORT,
                  referenced_security_group_id=tasks[role].id)
            allow(egress, f"{role}-to-db", tasks[role].id, "PostgreSQL, to the database's security group only",
                  POSTGRES_PORT, referenced_security_group_id=db_security_group_id)
        # AWS APIs (through NAT or endpoints) and Pinecone all speak HTTPS; DNS, NTP and
        # the metadata services are link-local and not subject to security groups.
        for role, sg in tasks.items():
            allow(egress, f"{role}-https-out", sg.id, "HTTPS out: AWS APIs and Pinecone", HTTPS_PORT,
                  cidr_ipv4="0.0.0.0/0")
        self.register_outputs({})
