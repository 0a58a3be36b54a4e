"""Security groups of the compute layer and every rule between them.

internet -> ALB (listener ports only) -> frontend (its port only);
frontend, pelican -> database; emu and pelican accept nothing.
"""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_aws as aws

from infra.database import POSTGRES_PORT


class ServiceFirewall(pulumi.ComponentResource):
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
        super().__init__("semsearch:compute:ServiceFirewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def group(role: str, description: str) -> aws.ec2.SecurityGroup:
            return aws.ec2.SecurityGroup(f"{name}-{role}", description=description, vpc_id=vpc_id, opts=child)

        self.alb = group("alb", "Public load balancer")
        self.frontend = group("frontend", "Frontend tasks")
        self.pelican = group("pelican", "Pelican tasks (no inbound)")
        self.emu = group("emu", "Emu tasks and GPU hosts (no inbound)")

        for port in listener_ports:
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-alb-in-{port}",
                security_group_id=self.alb.id,
                description=f"Internet to the ALB listener on {port}",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=alb_ingress_cidr,
                opts=child,
            )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-alb-to-frontend",
            security_group_id=self.alb.id,
            description="ALB to frontend tasks",
            ip_protocol="tcp",
            from_port=frontend_port,
            to_port=frontend_port,
            referenced_security_group_id=self.frontend.id,
            opts=child,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-frontend-from-alb",
            security_group_id=self.frontend.id,
            description="ALB to the frontend port",
            ip_protocol="tcp",
            from_port=frontend_port,
            to_port=frontend_port,
            referenced_security_group_id=self.alb.id,
            opts=child,
        )
        for role, sg in (("frontend", self.frontend), ("pelican", self.pelican)):
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-db-from-{role}",
                security_group_id=db_security_group_id,
                description=f"{role} to PostgreSQL",
                ip_protocol="tcp",
                from_port=POSTGRES_PORT,
                to_port=POSTGRES_PORT,
                referenced_security_group_id=sg.id,
                opts=child,
            )
        # Tasks reach AWS APIs, Pinecone and the database: outbound is open, inbound is not.
        for role, sg in (("frontend", self.frontend), ("pelican", self.pelican), ("emu", self.emu)):
            aws.vpc.SecurityGroupEgressRule(
                f"{name}-{role}-out",
                security_group_id=sg.id,
                description="All outbound",
                ip_protocol="-1",
                cidr_ipv4="0.0.0.0/0",
                opts=child,
            )
        self.register_outputs({})
