"""The public ALB in front of the frontend (Gradio needs sticky sessions)."""
from __future__ import annotations

from typing import Sequence

import pulumi
import pulumi_aws as aws

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


class PublicLoadBalancer(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_id: pulumi.Input[str],
        target_port: int,
        health_check_path: str,
        certificate_arn: str = "",
        idle_timeout_seconds: int = 120,
        stickiness_seconds: int = 86400,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("semsearch:compute:PublicLoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.https = bool(certificate_arn)
        self.lb = aws.lb.LoadBalancer(
            name,
            load_balancer_type="application",
            internal=False,
            subnets=subnet_ids,
            security_groups=[security_group_id],
            drop_invalid_header_fields=True,
            idle_timeout=idle_timeout_seconds,  # Gradio streams results over long requests
            opts=child,
        )
        self.target_group = aws.lb.TargetGroup(
            name,
            port=target_port,
            protocol="HTTP",
            target_type="ip",
            vpc_id=vpc_id,
            deregistration_delay=30,
            health_check={
                "enabled": True,
                "path": health_check_path,
                "port": "traffic-port",
                "protocol": "HTTP",
                "matcher": "200",
                "interval": 15,
                "timeout": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            # Gradio's queue keeps per-session state on one task.
            stickiness={"enabled": True, "type": "lb_cookie", "cookie_duration": stickiness_seconds},
            opts=child,
        )
        forward = [{"type": "forward", "target_group_arn": self.target_group.arn}]
        if self.https:
            aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=self.lb.arn,
                port=443,
                protocol="HTTPS",
                ssl_policy=TLS_POLICY,
                certificate_arn=certificate_arn,
                default_actions=forward,
                opts=child,
            )
            http_actions = [
                {"type": "redirect",
                 "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}
            ]
        else:
            http_actions = forward
        self.http_listener = aws.lb.Listener(
            f"{name}-http",
            load_balancer_arn=self.lb.arn,
            port=80,
            protocol="HTTP",
            default_actions=http_actions,
            opts=child,
        )
        scheme = "https" if self.https else "http"
        self.url = self.lb.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.dns_name = self.lb.dns_name
        self.register_outputs({"url": self.url})


def listener_ports(certificate_arn: str) -> list[int]:
    return [80, 443] if certificate_arn else [80]
