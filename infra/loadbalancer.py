"""The public ALB in front of the frontend (Gradio needs sticky sessions)."""
from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

from infra.layer import component_type

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class WebEndpoint:
    """How the ALB faces users: HTTPS with a certificate, or plain HTTP by explicit opt-in."""

    certificate_arn: str
    allow_plain_http: bool
    domain_name: str = ""

    @property
    def https(self) -> bool:
        return bool(self.certificate_arn)

    @property
    def editing_enabled(self) -> bool:
        """The editor login is a password: it only travels over TLS."""
        return self.https

    @property
    def listener_ports(self) -> list[int]:
        return [80, 443] if self.https else [80]


def web_endpoint(certificate_arn: str, allow_plain_http: bool, domain_name: str = "") -> WebEndpoint:
    """Validate the TLS settings at preview: HTTPS unless plain HTTP is asked for by name."""
    if certificate_arn and allow_plain_http:
        raise ValueError("set either certificateArn (HTTPS) or allowPlainHttp, not both: "
                         "with a certificate, port 80 only redirects to HTTPS")
    if not certificate_arn and not allow_plain_http:
        raise ValueError(
            "the frontend is served over HTTPS by default: set certificateArn to an ACM certificate in "
            "this region (pulumi config set certificateArn arn:aws:acm:...), or, for a throwaway stack, "
            "pulumi config set allowPlainHttp true (plain HTTP on port 80, editing turned off)"
        )
    if domain_name and not certificate_arn:
        raise ValueError("domainName needs certificateArn: the domain is served over HTTPS")
    return WebEndpoint(certificate_arn, allow_plain_http, domain_name)


# Where the ALB writes its access logs inside the bucket (the ALB adds AWSLogs/<account>/...).
ACCESS_LOG_PREFIX = "alb"
# Regions opened since August 2022 deliver ALB logs as this service principal; older ones as
# the region's Elastic Load Balancing account (AWS docs: "Enable access logs for your
# Application Load Balancer", bucket policy). The policy grants both.
ELB_LOG_DELIVERY_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"


@dataclass(frozen=True)
class AccessLogs:
    """ALB access logs to an S3 bucket of their own, expired after `retention_days`.

    force_destroy: let ``pulumi destroy`` delete the bucket with logs still in it (dev)."""

    retention_days: int
    force_destroy: bool = False

    def __post_init__(self) -> None:
        if self.retention_days <= 0:
            raise ValueError("albAccessLogDays must be positive, or 0 for no access logs")


def access_log_policy(bucket_arn: str, account_id: str, elb_account_arn: str) -> str:
    """Bucket policy: the load balancer service may put objects under the log prefix, nothing else."""
    logs = f"{bucket_arn}/{ACCESS_LOG_PREFIX}/AWSLogs/{account_id}/*"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ElbAccountWritesLogs", "Effect": "Allow", "Principal": {"AWS": elb_account_arn},
             "Action": "s3:PutObject", "Resource": logs},
            {"Sid": "ElbLogDeliveryWritesLogs", "Effect": "Allow",
             "Principal": {"Service": ELB_LOG_DELIVERY_PRINCIPAL}, "Action": "s3:PutObject", "Resource": logs},
            {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": [bucket_arn, f"{bucket_arn}/*"],
             "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        ],
    }, sort_keys=True)


class AccessLogBucket(pulumi.ComponentResource):
    """A private, encrypted S3 bucket the ALB writes its access logs to, with a lifecycle
    rule that deletes each log after ``logs.retention_days``.

    Encryption is SSE-S3: the only kind ALB access logs support (AWS docs: "Enable access
    logs for your Application Load Balancer", bucket requirements)."""

    def __init__(self, name: str, *, logs: AccessLogs, opts: pulumi.ResourceOptions | None = None):
        token = component_type("compute", "AccessLogBucket")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(name, force_destroy=logs.force_destroy, opts=child)
        aws.s3.BucketPublicAccessBlock(
            name, bucket=self.bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(
            name, bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            name, bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}], opts=child)
        aws.s3.BucketLifecycleConfiguration(
            name, bucket=self.bucket.id,
            rules=[{"id": "expire-access-logs", "status": "Enabled",
                    "filter": {"prefix": f"{ACCESS_LOG_PREFIX}/"},
                    "expiration": {"days": logs.retention_days}}],
            opts=child)
        account = aws.get_caller_identity_output().account_id
        elb_account = aws.elb.get_service_account_output().arn
        self.policy = aws.s3.BucketPolicy(
            name, bucket=self.bucket.id,
            policy=pulumi.Output.all(self.bucket.arn, account, elb_account).apply(
                lambda v: access_log_policy(v[0], v[1], v[2])),
            opts=child)
        self.name = self.bucket.bucket
        self.register_outputs({"bucket": self.name})


class PublicLoadBalancer(pulumi.ComponentResource):
    """ALB, target group and listeners; optionally a Route 53 alias for the domain.

    ``listeners`` are what a service registering into the target group must wait for:
    ECS refuses a target group that no listener forwards to yet.
    """

    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[Sequence[str]],
        security_group_id: pulumi.Input[str],
        target_port: int,
        health_check_path: str,
        endpoint: WebEndpoint,
        hosted_zone_id: str = "",
        idle_timeout_seconds: int = 120,
        stickiness_seconds: int = 86400,
        access_logs: AccessLogs | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """access_logs: write the ALB's access logs to an AccessLogBucket of its own (None: no logs)."""
        token = component_type("compute", "PublicLoadBalancer")
        super().__init__(token, name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.https = endpoint.https
        self.access_log_bucket = (AccessLogBucket(f"{name}-logs", logs=access_logs, opts=child)
                                  if access_logs else None)
        self.lb = aws.lb.LoadBalancer(
            name,
            load_balancer_type="application",
            internal=False,
            subnets=subnet_ids,
            security_groups=[security_group_id],
            drop_invalid_header_fields=True,
            # Gradio streams results over long requests. The frontend keeps idle
            # connections open longer than this (LOAD_BALANCER_IDLE_TIMEOUT_SECONDS), or
            # the ALB would reuse one the app had just closed: a 502 with no log line.
            idle_timeout=idle_timeout_seconds,
            access_logs=({"bucket": self.access_log_bucket.name, "prefix": ACCESS_LOG_PREFIX, "enabled": True}
                         if self.access_log_bucket else None),
            # The ALB checks that it may write to the bucket when logging is turned on.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.access_log_bucket.policy]
                                        if self.access_log_bucket else None),
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
        # Plain dicts for the provider's ListenerDefaultAction input types.
        forward: list[Any] = [{"type": "forward", "target_group_arn": self.target_group.arn}]
        self.listeners: list[aws.lb.Listener] = []

        def listener(port: int, actions: list[Any], certificate_arn: pulumi.Input[str] | None = None) -> aws.lb.Listener:
            protocol = "HTTPS" if certificate_arn else "HTTP"
            created = aws.lb.Listener(
                f"{name}-{protocol.lower()}", load_balancer_arn=self.lb.arn, port=port, protocol=protocol,
                ssl_policy=TLS_POLICY if certificate_arn else None, certificate_arn=certificate_arn,
                default_actions=actions, opts=child)
            self.listeners.append(created)
            return created

        if self.https:
            self.https_listener = listener(443, forward, certificate_arn=endpoint.certificate_arn)
            http_actions: list[Any] = [
                {"type": "redirect",
                 "redirect": {"port": "443", "protocol": "HTTPS", "status_code": "HTTP_301"}}
            ]
        else:
            http_actions = forward
        self.http_listener = listener(80, http_actions)
        if hosted_zone_id:
            if not endpoint.domain_name:
                raise ValueError("hostedZoneId needs domainName: the alias record is for that name")
            aws.route53.Record(
                f"{name}-alias",
                zone_id=hosted_zone_id,
                name=endpoint.domain_name,
                type="A",
                aliases=[{"name": self.lb.dns_name, "zone_id": self.lb.zone_id,
                          "evaluate_target_health": True}],
                opts=child,
            )
        self.dns_name = self.lb.dns_name
        if endpoint.domain_name:
            self.url = pulumi.Output.from_input(f"https://{endpoint.domain_name}")
        else:
            # With a certificate but no domain, browsers reject the ALB's own name (it is not
            # on the certificate); the URL is still the one to open, past the warning.
            scheme = "https" if self.https else "http"
            self.url = self.lb.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        self.register_outputs({"url": self.url})


def require_rate_limit(endpoint: WebEndpoint, alb_ingress_cidr: str, waf_rate_limit: int) -> None:
    """Refuse at preview an editor login that the whole internet reaches without the WAF
    rate-based rule (rate_limit_acl): the app's login throttle counts per replica, and
    only the WAF bounds guessing spread over every frontend task. A throwaway stack
    (plain HTTP) has no login, and an ALB that admits a narrower CIDR than /0 does not
    face the internet. Raises ValueError; `alb_ingress_cidr` must be an IPv4 CIDR."""
    if not endpoint.editing_enabled or waf_rate_limit:
        return
    if ipaddress.ip_network(alb_ingress_cidr, strict=False).prefixlen == 0:
        raise ValueError(
            f"editing is on and the ALB admits the whole internet (albIngressCidr {alb_ingress_cidr}): keep the "
            "WAF rate rule on the editor login (wafRateLimit, default 1000), or restrict albIngressCidr to your "
            "own addresses")


def rate_limit_acl(name: str, *, load_balancer_arn: pulumi.Input[str], limit_per_5_min: int,
                   opts: pulumi.ResourceOptions | None = None) -> aws.wafv2.WebAcl:
    """A regional WAF web ACL on the ALB that blocks an address sending more than
    limit_per_5_min requests in any 5 minutes (AWS docs: rate-based rule statements;
    the limit must be at least 10). It bounds, across all frontend replicas, what the
    app's per-replica login throttle cannot: guessing spread over many tasks."""
    if limit_per_5_min < 10:
        raise ValueError("wafRateLimit must be at least 10 (the WAF minimum), or 0 for no WAF")
    metric = name.replace("_", "-")[:120]
    acl = aws.wafv2.WebAcl(
        name,
        scope="REGIONAL",
        description="Per-address request rate limit in front of the frontend",
        default_action={"allow": {}},
        rules=[{
            "name": "per-address-rate",
            "priority": 0,
            "action": {"block": {}},
            "statement": {"rate_based_statement": {"limit": limit_per_5_min, "aggregate_key_type": "IP"}},
            "visibility_config": {"cloudwatch_metrics_enabled": True, "metric_name": f"{metric}-rate",
                                  "sampled_requests_enabled": True},
        }],
        visibility_config={"cloudwatch_metrics_enabled": True, "metric_name": metric, "sampled_requests_enabled": True},
        opts=opts,
    )
    aws.wafv2.WebAclAssociation(name, resource_arn=load_balancer_arn, web_acl_arn=acl.arn, opts=opts)
    return acl
