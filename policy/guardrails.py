"""Guardrails as plain functions: ``validator(resource_type, props) -> [violation, ...]``.

``props`` are the resource's inputs as the Pulumi engine names them (camelCase),
which is what CrossGuard hands to a policy and what the test mocks record.
During a preview some inputs are not known yet (they depend on resources still to
be created); ``plain_props`` turns those into ``UNKNOWN`` so every validator still
judges what is known.  An unknown reference (a key ARN, a subnet group) counts as
set; a security switch that is unknown (``publiclyAccessible``) is reported,
because nothing shows it is off.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Iterable


class _Unknown:
    """A value Pulumi cannot know at preview."""

    def __repr__(self) -> str:
        return "<unknown at preview>"


UNKNOWN = _Unknown()


def plain_props(props: Any, unknown_errors: tuple[type[BaseException], ...]) -> Any:
    """Copy CrossGuard's props, replacing each value that raises one of ``unknown_errors``.

    CrossGuard hands props that raise on access to an unknown value, so ``dict(props)``
    fails as soon as any input is unknown and the whole policy is skipped.
    """

    def read(container, key):
        try:
            return plain_props(container[key], unknown_errors)
        except unknown_errors:
            return UNKNOWN

    if isinstance(props, Mapping):
        return {key: read(props, key) for key in props}
    if isinstance(props, Sequence) and not isinstance(props, (str, bytes)):
        return [read(props, i) for i in range(len(props))]
    return props

Validator = Callable[[str, dict], list]

OPEN_IPV4 = "0.0.0.0/0"
OPEN_IPV6 = "::/0"
# The only ports the internet may reach: the ALB's listeners.
LISTENER_PORTS = frozenset({80, 443})

IAM_POLICY_TYPES = {
    "aws:iam/rolePolicy:RolePolicy",
    "aws:iam/policy:Policy",
    "aws:iam/userPolicy:UserPolicy",
    "aws:iam/groupPolicy:GroupPolicy",
}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def no_public_database(resource_type: str, props: dict) -> list[str]:
    if resource_type in ("aws:rds/instance:Instance", "aws:rds/clusterInstance:ClusterInstance"):
        public = props.get("publiclyAccessible")
        if public is UNKNOWN:
            return ["databases must not be publicly accessible (publiclyAccessible is unknown at preview; "
                    "set it to false literally)"]
        if _truthy(public):
            return ["databases must not be publicly accessible (publiclyAccessible=true)"]
    return []


def encryption_at_rest(resource_type: str, props: dict) -> list[str]:  # noqa: C901 (one branch per resource type the policy checks)
    if resource_type in ("aws:rds/instance:Instance", "aws:rds/cluster:Cluster"):
        if not _truthy(props.get("storageEncrypted")):
            return ["database storage must be encrypted (storageEncrypted=true)"]
    elif resource_type == "aws:sqs/queue:Queue":
        if not (_truthy(props.get("sqsManagedSseEnabled")) or props.get("kmsMasterKeyId")):
            return ["SQS queues must be encrypted (sqsManagedSseEnabled or kmsMasterKeyId)"]
    elif resource_type == "aws:sns/topic:Topic":
        if not props.get("kmsMasterKeyId"):
            return ["SNS topics must be encrypted (kmsMasterKeyId)"]
    elif resource_type == "aws:ecr/repository:Repository":
        configs = props.get("encryptionConfigurations") or []
        if not any((c or {}).get("encryptionType") in ("AES256", "KMS") for c in configs):
            return ["ECR repositories must declare their encryption (encryptionConfigurations)"]
    elif resource_type == "aws:ebs/volume:Volume":
        if not _truthy(props.get("encrypted")):
            return ["EBS volumes must be encrypted"]
    elif resource_type == "aws:ec2/launchTemplate:LaunchTemplate":
        for mapping in props.get("blockDeviceMappings") or []:
            ebs = (mapping or {}).get("ebs")
            if ebs and not _truthy(ebs.get("encrypted")):
                return [f"launch template volume {mapping.get('deviceName')} must be encrypted"]
    elif resource_type == "aws:kms/key:Key":
        if not _truthy(props.get("enableKeyRotation")):
            return ["KMS keys must rotate (enableKeyRotation=true)"]
    return []


def postgres_requires_tls(resource_type: str, props: dict) -> list[str]:
    if resource_type != "aws:rds/parameterGroup:ParameterGroup":
        return []
    family = props.get("family")
    if not isinstance(family, str) or not family.startswith("postgres"):
        return []
    for param in props.get("parameters") or []:
        if isinstance(param, dict) and param.get("name") == "rds.force_ssl" and str(param.get("value")) == "1":
            return []
    return ["PostgreSQL parameter groups must force TLS (rds.force_ssl=1)"]


def _open_ingress_violation(protocol: Any, from_port: Any, to_port: Any, what: str) -> list[str]:
    proto = str(protocol).lower()
    low, high = _int(from_port), _int(to_port)
    if proto in ("tcp", "6") and low is not None and low == high and low in LISTENER_PORTS:
        return []
    return [f"{what} opens {proto} {from_port}-{to_port} to the internet; only TCP "
            f"{sorted(LISTENER_PORTS)} (the ALB listeners) may be"]


def no_open_ingress(resource_type: str, props: dict) -> list[str]:
    violations: list[str] = []
    if resource_type == "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule":
        if props.get("cidrIpv4") == OPEN_IPV4 or props.get("cidrIpv6") == OPEN_IPV6:
            violations += _open_ingress_violation(
                props.get("ipProtocol"), props.get("fromPort"), props.get("toPort"), "ingress rule"
            )
    elif resource_type == "aws:ec2/securityGroupRule:SecurityGroupRule":
        if props.get("type") == "ingress" and (
            OPEN_IPV4 in (props.get("cidrBlocks") or []) or OPEN_IPV6 in (props.get("ipv6CidrBlocks") or [])
        ):
            violations += _open_ingress_violation(
                props.get("protocol"), props.get("fromPort"), props.get("toPort"), "ingress rule"
            )
    elif resource_type == "aws:ec2/securityGroup:SecurityGroup":
        for rule in props.get("ingress") or []:
            if OPEN_IPV4 in (rule.get("cidrBlocks") or []) or OPEN_IPV6 in (rule.get("ipv6CidrBlocks") or []):
                violations += _open_ingress_violation(
                    rule.get("protocol"), rule.get("fromPort"), rule.get("toPort"), "inline ingress"
                )
    return violations


def _actions(statement: dict) -> Iterable[str]:
    action = statement.get("Action", [])
    actions = [action] if isinstance(action, str) else list(action) if isinstance(action, list) else []
    return [a for a in actions if isinstance(a, str)]


def wildcard_actions_in(document: Any) -> list[str]:
    """Wildcard or NotAction grants in one IAM policy document (JSON text or dict)."""
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            return ["policy is not valid JSON"]
    if not isinstance(document, dict):
        return []  # unknown during preview
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    found = []
    for stmt in statements:
        if not isinstance(stmt, dict) or stmt.get("Effect") != "Allow":
            continue
        if "NotAction" in stmt:
            found.append("Allow with NotAction grants everything else")
        found += [f"wildcard action {a!r}" for a in _actions(stmt) if "*" in a]
    return found


def no_wildcard_iam_actions(resource_type: str, props: dict) -> list[str]:
    documents = []
    if resource_type in IAM_POLICY_TYPES:
        documents.append(props.get("policy"))
    elif resource_type == "aws:iam/role:Role":
        inline = props.get("inlinePolicies")
        documents += [p.get("policy") for p in inline if isinstance(p, dict)] if isinstance(inline, list) else []
    return [f"IAM policies must name their actions: {v}" for d in documents for v in wildcard_actions_in(d)]


def log_retention_set(resource_type: str, props: dict) -> list[str]:
    if resource_type != "aws:cloudwatch/logGroup:LogGroup":
        return []
    days = _int(props.get("retentionInDays"))
    if not days or days <= 0:
        return ["log groups must set retentionInDays (logs are kept forever otherwise)"]
    return []


def ecs_services_keep_a_task(resource_type: str, props: dict) -> list[str]:
    """ECS services under Application Auto Scaling keep at least one task: their scaling
    divides the work waiting by the task count, which at zero tasks has no value, so
    nothing would ever scale them out again."""
    if resource_type != "aws:appautoscaling/target:Target" or props.get("serviceNamespace") != "ecs":
        return []
    low = props.get("minCapacity")
    if low is UNKNOWN:
        return []
    low = _int(low)
    if low is None or low < 1:
        return ["ECS services must keep at least one task (minCapacity >= 1): per-task scaling "
                "signals have no value at zero tasks"]
    return []


# --- the production tier: resources tagged tier=prod (infra/layer.py, the `tier` config) ---

PROD_TIER = "prod"
# Frontend tasks behind the load balancer in prod: one task is a single point of failure
# during a deploy or an AZ outage.
MIN_PROD_FRONTEND_TASKS = 2


def _prod(props: dict) -> bool:
    tags = props.get("tags")
    if isinstance(tags, list):  # Auto Scaling groups
        tags = {t.get("key"): t.get("value") for t in tags if isinstance(t, dict)}
    return isinstance(tags, dict) and tags.get("tier") == PROD_TIER


def prod_database_resilient(resource_type: str, props: dict) -> list[str]:
    """In prod, RDS runs Multi-AZ (a standby in a second AZ takes over in a failure) and
    refuses deletion."""
    if resource_type != "aws:rds/instance:Instance" or not _prod(props):
        return []
    found = []
    if not _truthy(props.get("multiAz")):
        found.append("prod databases run Multi-AZ (dbMultiAz=true)")
    if not _truthy(props.get("deletionProtection")):
        found.append("prod databases have deletion protection (dbDeletionProtection=true)")
    return found


DYNAMIC_RESOURCE = "pulumi-python:dynamic:Resource"


def prod_index_deletion_protected(resource_type: str, props: dict) -> list[str]:
    """In prod, Pinecone refuses to delete the index; only an index being retired after a
    migration (tag lifecycle=retiring) may lift it."""
    if resource_type == "pinecone:index/index:Index":
        protection = props.get("deletionProtection")
    elif resource_type == DYNAMIC_RESOURCE and "schema" in props:
        # A document index (infra/document_index.py): the Pinecone provider cannot
        # declare one, so it is a dynamic resource with the SDK's snake_case inputs.
        protection = props.get("deletion_protection")
    else:
        return []
    if not _prod(props) or (props.get("tags") or {}).get("lifecycle") == "retiring":
        return []
    if protection != "enabled":
        return ["prod Pinecone indexes have deletion protection (pineconeDeletionProtection=true)"]
    return []


def prod_nat_per_az(resource_type: str, props: dict) -> list[str]:
    """In prod, each AZ has its own NAT gateway, so losing one AZ does not cut the others'
    tasks off from ECR, SQS and Pinecone."""
    if resource_type != "awsx:ec2:Vpc" or not _prod(props):
        return []
    strategy = (props.get("natGateways") or {}).get("strategy")
    if strategy is UNKNOWN or strategy == "OnePerAz":
        return []
    return [f"prod VPCs have a NAT gateway per AZ (natGatewayStrategy=OnePerAz, not {strategy})"]


def prod_frontend_redundant(resource_type: str, props: dict) -> list[str]:
    """In prod, a load-balanced ECS service (the frontend) runs at least
    MIN_PROD_FRONTEND_TASKS tasks."""
    if resource_type != "aws:ecs/service:Service" or not _prod(props) or not props.get("loadBalancers"):
        return []
    count = _int(props.get("desiredCount"))
    if count is None or count < MIN_PROD_FRONTEND_TASKS:
        return [f"prod load-balanced services run at least {MIN_PROD_FRONTEND_TASKS} tasks "
                f"(frontendDesiredCount), not {props.get('desiredCount')}"]
    return []


RULES: dict[str, tuple[str, Validator]] = {
    "no-public-database": ("Databases are never publicly accessible.", no_public_database),
    "encryption-at-rest": ("Databases, queues, topics, repositories, volumes and keys are encrypted.",
                           encryption_at_rest),
    "postgres-requires-tls": ("PostgreSQL parameter groups set rds.force_ssl=1.", postgres_requires_tls),
    "no-open-ingress": ("No ingress from 0.0.0.0/0 or ::/0 except TCP 80/443 (ALB listeners).", no_open_ingress),
    "no-wildcard-iam-actions": ("IAM policies list their actions; no '*' and no NotAction.",
                                no_wildcard_iam_actions),
    "log-retention-set": ("CloudWatch log groups have a retention period.", log_retention_set),
    "ecs-services-keep-a-task": ("Autoscaled ECS services never scale to zero tasks.", ecs_services_keep_a_task),
    "prod-database-resilient": ("tier=prod: RDS is Multi-AZ with deletion protection.", prod_database_resilient),
    "prod-index-deletion-protected": ("tier=prod: Pinecone indexes have deletion protection (except one "
                                      "being retired).", prod_index_deletion_protected),
    "prod-nat-per-az": ("tier=prod: one NAT gateway per availability zone.", prod_nat_per_az),
    "prod-frontend-redundant": ("tier=prod: the load-balanced frontend runs at least two tasks.",
                                prod_frontend_redundant),
}


# --- rules over the whole stack: ``validator([(resource_type, props), ...]) -> [violation]`` ---

StackValidator = Callable[[list], list]


def prod_frontend_autoscaled(resources: list) -> list[str]:
    """In prod, every load-balanced ECS service has an Application Auto Scaling target
    that keeps at least MIN_PROD_FRONTEND_TASKS tasks (compute's frontendMaxTasks).

    A target belongs to a service when its resourceId (``service/<cluster>/<service>``)
    ends with the service's name; while either is unknown at preview, any ECS target
    keeping enough tasks counts."""
    targets = [props for typ, props in resources
               if typ == "aws:appautoscaling/target:Target" and props.get("serviceNamespace") == "ecs"]
    found = []
    for typ, props in resources:
        if typ != "aws:ecs/service:Service" or not _prod(props) or not props.get("loadBalancers"):
            continue
        name = props.get("name")

        def belongs(target: dict) -> bool:
            rid = target.get("resourceId")
            if not isinstance(name, str) or not isinstance(rid, str):
                return True
            return rid.endswith(f"/{name}")

        mine = [t for t in targets if belongs(t)]
        if not any((_int(t.get("minCapacity")) or 0) >= MIN_PROD_FRONTEND_TASKS for t in mine):
            found.append(f"prod load-balanced service {name if isinstance(name, str) else ''} is autoscaled "
                         f"with at least {MIN_PROD_FRONTEND_TASKS} tasks (frontendMaxTasks, frontendDesiredCount)")
    return found


def _rate_limited(acl: dict) -> bool:
    for rule in acl.get("rules") or []:
        statement = (rule or {}).get("statement") if isinstance(rule, dict) else None
        if isinstance(statement, dict) and statement.get("rateBasedStatement"):
            return True
    return False


def prod_editing_rate_limited(resources: list) -> list[str]:
    """In prod, a load balancer with an HTTPS listener (where the editor login is served:
    compute turns editing on exactly when there is a certificate) has a WAF web ACL with a
    rate-based rule associated (compute's wafRateLimit). The app's login throttle counts
    per replica; only the WAF bounds guessing spread over every frontend task."""
    https_lbs = [props.get("loadBalancerArn") for typ, props in resources
                 if typ == "aws:lb/listener:Listener" and _prod(props) and props.get("protocol") == "HTTPS"]
    if not https_lbs:
        return []
    if not any(typ == "aws:wafv2/webAcl:WebAcl" and _rate_limited(props) for typ, props in resources):
        return ["prod load balancers serving the editor login (HTTPS) have a WAF rate-based rule "
                "(wafRateLimit, e.g. 1000)"]
    associated = [props.get("resourceArn") for typ, props in resources
                  if typ == "aws:wafv2/webAclAssociation:WebAclAssociation"]
    found = []
    for lb in https_lbs:
        if not any(a == lb or not isinstance(a, str) or not isinstance(lb, str) for a in associated):
            found.append(f"prod load balancer {lb} serves the editor login without its WAF web ACL (wafRateLimit)")
    return found


STACK_RULES: dict[str, tuple[str, StackValidator]] = {
    "prod-frontend-autoscaled": ("tier=prod: the load-balanced frontend autoscales, keeping at least two tasks.",
                                 prod_frontend_autoscaled),
    "prod-editing-rate-limited": ("tier=prod: an ALB serving the editor login (HTTPS) has a WAF rate-based rule.",
                                  prod_editing_rate_limited),
}


def stack_violations(resources: list) -> list[tuple[str, str]]:
    """Every ``(rule, message)`` the stack's ``(resource_type, props)`` pairs break."""
    return [(rule, msg) for rule, (_, fn) in STACK_RULES.items() for msg in fn(resources)]


def violations(resource_type: str, props: dict) -> list[tuple[str, str]]:
    """Every ``(rule, message)`` the resource breaks."""
    return [(rule, msg) for rule, (_, fn) in RULES.items() for msg in fn(resource_type, props)]
