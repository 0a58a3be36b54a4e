"""The guardrails: unit tests on plain validators, the pack's wiring, and every mocked layer."""
import json
import runpy
import sys
import types

import pytest

import guardrails as g
from harness import REPO


def test_every_layer_passes_every_guardrail(all_runs):
    checked = 0
    for label, run in all_runs.items():
        for r in run.resources:
            checked += 1
            assert g.violations(r.typ, r.inputs) == [], f"{label}: {r}"
    assert checked > 100


def test_each_rule_actually_sees_resources_from_the_layers(all_runs):
    types_seen = {r.typ for run in all_runs.values() for r in run.resources}
    for typ in ("aws:rds/instance:Instance", "aws:rds/parameterGroup:ParameterGroup", "aws:sqs/queue:Queue",
                "aws:sns/topic:Topic", "aws:ecr/repository:Repository", "aws:iam/rolePolicy:RolePolicy",
                "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
                "aws:cloudwatch/logGroup:LogGroup", "aws:ec2/launchTemplate:LaunchTemplate", "aws:kms/key:Key",
                "aws:appautoscaling/target:Target"):
        assert typ in types_seen


def broken(run, typ, suffix="", **changes):
    """A copy of a real resource from a layer with some props changed."""
    r = run.one(typ, suffix)
    return typ, {**r.inputs, **changes}


def test_public_database_fails(data_run):
    typ, props = broken(data_run, "aws:rds/instance:Instance", publiclyAccessible=True)
    assert [rule for rule, _ in g.violations(typ, props)] == ["no-public-database"]


def test_unencrypted_resources_fail(data_run, messaging_run, compute_run, compute_gpu_run):
    cases = [
        broken(data_run, "aws:rds/instance:Instance", storageEncrypted=False),
        broken(messaging_run, "aws:sqs/queue:Queue", "-jobs", sqsManagedSseEnabled=False),
        broken(messaging_run, "aws:sns/topic:Topic", kmsMasterKeyId=None),
        broken(compute_run, "aws:ecr/repository:Repository", "-emu", encryptionConfigurations=[]),
        broken(messaging_run, "aws:kms/key:Key", enableKeyRotation=False),
        broken(compute_gpu_run, "aws:ec2/launchTemplate:LaunchTemplate",
               blockDeviceMappings=[{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}]),
        ("aws:ebs/volume:Volume", {"size": 10}),
    ]
    for typ, props in cases:
        assert [rule for rule, _ in g.violations(typ, props)] == ["encryption-at-rest"], typ
    # A queue encrypted with KMS instead of SSE-SQS is fine.
    assert g.encryption_at_rest("aws:sqs/queue:Queue", {"kmsMasterKeyId": "alias/aws/sqs"}) == []


def test_postgres_without_forced_tls_fails(data_run):
    typ, props = broken(data_run, "aws:rds/parameterGroup:ParameterGroup",
                        parameters=[{"name": "rds.force_ssl", "value": "0"}])
    assert [rule for rule, _ in g.violations(typ, props)] == ["postgres-requires-tls"]
    assert g.postgres_requires_tls(typ, {"family": "mysql8.0", "parameters": []}) == []


def test_open_ingress_fails_except_listener_ports(compute_run):
    typ = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
    _, props = broken(compute_run, typ, "-alb-in-80")
    assert g.no_open_ingress(typ, props) == []
    for change in ({"fromPort": 22, "toPort": 22}, {"fromPort": 0, "toPort": 65535},
                   {"ipProtocol": "-1", "fromPort": None, "toPort": None}, {"ipProtocol": "udp"}):
        assert [r for r, _ in g.violations(typ, {**props, **change})] == ["no-open-ingress"], change
    # The database opened to the world, IPv6 included.
    _, db_rule = broken(compute_run, typ, "-db-from-pelican")
    assert g.no_open_ingress(typ, {**db_rule, "referencedSecurityGroupId": None, "cidrIpv6": "::/0"})
    # Inline and legacy rule shapes are covered too.
    assert g.no_open_ingress("aws:ec2/securityGroup:SecurityGroup", {
        "ingress": [{"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]}]})
    assert g.no_open_ingress("aws:ec2/securityGroupRule:SecurityGroupRule", {
        "type": "ingress", "protocol": "tcp", "fromPort": 7860, "toPort": 7860, "cidrBlocks": ["0.0.0.0/0"]})
    assert g.no_open_ingress("aws:ec2/securityGroupRule:SecurityGroupRule", {
        "type": "egress", "protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/0"]}) == []


def test_wildcard_iam_actions_fail(compute_run):
    typ, props = broken(compute_run, "aws:iam/rolePolicy:RolePolicy", "-emu-task")
    doc = json.loads(props["policy"])
    doc["Statement"][0]["Action"] = ["sqs:*"]
    assert [r for r, _ in g.violations(typ, {**props, "policy": json.dumps(doc)})] == ["no-wildcard-iam-actions"]
    star = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}
    assert g.no_wildcard_iam_actions("aws:iam/policy:Policy", {"policy": json.dumps(star)})
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert g.no_wildcard_iam_actions("aws:iam/role:Role", {"inlinePolicies": [{"policy": json.dumps(not_action)}]})
    deny = {"Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    assert g.no_wildcard_iam_actions("aws:iam/policy:Policy", {"policy": json.dumps(deny)}) == []
    # Unknown during preview: nothing to judge yet.
    assert g.no_wildcard_iam_actions("aws:iam/policy:Policy", {}) == []


def test_log_group_without_retention_fails(compute_run):
    typ, props = broken(compute_run, "aws:cloudwatch/logGroup:LogGroup", "-emu")
    for bad in (None, 0):
        assert [r for r, _ in g.violations(typ, {**props, "retentionInDays": bad})] == ["log-retention-set"]


def test_autoscaled_ecs_service_scaled_to_zero_fails(compute_run):
    typ, props = broken(compute_run, "aws:appautoscaling/target:Target", "-emu-scaling", minCapacity=0)
    assert [r for r, _ in g.violations(typ, props)] == ["ecs-services-keep-a-task"]
    assert g.violations(typ, {**props, "minCapacity": None})
    # Other scalable targets (a DynamoDB table's capacity) are not ECS services.
    assert g.violations(typ, {**props, "serviceNamespace": "dynamodb"}) == []
    assert g.ecs_services_keep_a_task(typ, {**props, "minCapacity": g.UNKNOWN}) == []


def test_pack_wires_every_rule_as_a_mandatory_policy(monkeypatch):
    captured = {}
    fake = types.ModuleType("pulumi_policy")

    class EnforcementLevel:
        MANDATORY = "mandatory"

    class ResourceValidationPolicy:
        def __init__(self, name, description, validate):
            self.name, self.description, self.validate = name, description, validate

    def PolicyPack(name, enforcement_level, policies):  # noqa: N802 - mirrors the SDK
        captured.update(name=name, level=enforcement_level, policies=policies)

    fake.EnforcementLevel, fake.ResourceValidationPolicy, fake.PolicyPack = (
        EnforcementLevel, ResourceValidationPolicy, PolicyPack)
    fake.StackValidationPolicy = ResourceValidationPolicy
    fake.ResourceValidationArgs = fake.StackValidationArgs = object
    monkeypatch.setitem(sys.modules, "pulumi_policy", fake)
    runpy.run_path(str(REPO / "policy" / "__main__.py"), run_name="__main__")

    assert captured["level"] == "mandatory"
    assert [p.name for p in captured["policies"]] == list(g.RULES) + list(g.STACK_RULES)
    by_name = {p.name: p for p in captured["policies"]}
    reported = []
    args = types.SimpleNamespace(resource_type="aws:rds/instance:Instance",
                                 props={"publiclyAccessible": True, "storageEncrypted": True})
    by_name["no-public-database"].validate(args, lambda msg, urn=None: reported.append(msg))
    assert len(reported) == 1 and "publicly" in reported[0]


def test_pack_loads_with_the_real_sdk_when_installed():
    sdk = pytest.importorskip("pulumi_policy")
    policy = sdk.ResourceValidationPolicy(name="x", description="d", validate=lambda a, r: None)
    assert policy.name == "x"


# --- preview: unknown inputs -----------------------------------------------------------------

def _pack_policies(monkeypatch):
    """The pack's policies as built by policy/__main__.py against the real SDK."""
    sdk = pytest.importorskip("pulumi_policy")
    captured = {}
    monkeypatch.setattr(sdk, "PolicyPack", lambda name, enforcement_level, policies: captured.update(p=policies))
    runpy.run_path(str(REPO / "policy" / "__main__.py"), run_name="__main__")
    return {p.name: p for p in captured["p"]}


def _preview_args(resource_type, props):
    """Props as CrossGuard hands them during a preview: unknown values raise on access."""
    from pulumi_policy.proxy import unknown_checking_proxy

    return types.SimpleNamespace(resource_type=resource_type, props=unknown_checking_proxy(props))


def test_pack_judges_known_values_when_others_are_unknown(monkeypatch, data_run):
    from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE, UNKNOWN_STRING_VALUE

    policies = _pack_policies(monkeypatch)
    db = dict(data_run.one("aws:rds/instance:Instance").inputs)
    # The subnet group and security group do not exist yet at the first preview.
    db.update(dbSubnetGroupName=UNKNOWN_STRING_VALUE, vpcSecurityGroupIds=[UNKNOWN_STRING_VALUE])

    def reported(policy, props, typ="aws:rds/instance:Instance"):
        found = []
        policies[policy].validate(_preview_args(typ, props), lambda msg, urn=None: found.append(msg))
        return found

    assert reported("no-public-database", db) == []
    assert reported("no-public-database", {**db, "publiclyAccessible": True})
    assert reported("no-public-database", {**db, "publiclyAccessible": UNKNOWN_BOOLEAN_VALUE})
    assert reported("encryption-at-rest", {**db, "storageEncrypted": False})
    # A topic whose key is still to be created is encrypted; one with no key is not.
    topic = "aws:sns/topic:Topic"
    assert reported("encryption-at-rest", {"kmsMasterKeyId": UNKNOWN_STRING_VALUE}, topic) == []
    assert reported("encryption-at-rest", {"name": UNKNOWN_STRING_VALUE}, topic)
    # Open ingress is caught even when the security group id is unknown.
    rule = {"securityGroupId": UNKNOWN_STRING_VALUE, "cidrIpv4": "0.0.0.0/0", "ipProtocol": "tcp",
            "fromPort": 22, "toPort": 22}
    assert reported("no-open-ingress", rule, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    # A policy document that is still unknown cannot be judged, and is not an error.
    assert reported("no-wildcard-iam-actions", {"role": UNKNOWN_STRING_VALUE, "policy": UNKNOWN_STRING_VALUE},
                    "aws:iam/rolePolicy:RolePolicy") == []


def test_plain_props_marks_nested_unknowns():
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

    props = unknown_checking_proxy({"a": [1, UNKNOWN_STRING_VALUE], "b": {"c": UNKNOWN_STRING_VALUE}, "d": "x"})
    assert g.plain_props(props, (UnknownValueError,)) == {"a": [1, g.UNKNOWN], "b": {"c": g.UNKNOWN}, "d": "x"}


# --- the production tier ------------------------------------------------------------------

def test_prod_stacks_pass_and_their_resources_are_tagged_prod(data_prod_run, network_prod_run, data_run):
    assert data_prod_run.one("aws:rds/instance:Instance").inputs["tags"]["tier"] == "prod"
    assert network_prod_run.one("awsx:ec2:Vpc").inputs["tags"]["tier"] == "prod"
    # Dev resources are not held to the prod rules: the default dev database is single-AZ.
    assert data_run.one("aws:rds/instance:Instance").inputs["tags"]["tier"] == "dev"


def test_prod_database_must_be_multi_az_and_deletion_protected(data_prod_run, data_run):
    for change in ({"multiAz": False}, {"deletionProtection": False}):
        typ, props = broken(data_prod_run, "aws:rds/instance:Instance", **change)
        assert [r for r, _ in g.violations(typ, props)] == ["prod-database-resilient"], change
    typ, dev = broken(data_run, "aws:rds/instance:Instance", multiAz=False, deletionProtection=False)
    assert g.violations(typ, dev) == []


def test_prod_index_must_be_deletion_protected_unless_retiring(data_prod_run):
    typ, props = broken(data_prod_run, "pinecone:index/index:Index", deletionProtection="disabled")
    assert [r for r, _ in g.violations(typ, props)] == ["prod-index-deletion-protected"]
    retiring = {**props, "tags": {**props["tags"], "lifecycle": "retiring"}}
    assert g.violations(typ, retiring) == []


def test_a_prod_document_index_must_be_deletion_protected_too(network_prod_run, messaging_run):
    from conftest import DATA_SECRETS
    from harness import run_layer

    run = run_layer("data", {"tier": "prod", "dbMultiAz": True, "dbDeletionProtection": True,
                             "dbBackupRetentionDays": 14, "pineconeDeletionProtection": True,
                             "pineconeIndexApi": "documents", "networkStack": "acme/network/prod"},
                    stack="prod", secrets=DATA_SECRETS,
                    stack_outputs={"network": network_prod_run.exports, "messaging": messaging_run.exports})
    typ, props = broken(run, "pulumi-python:dynamic:Resource")
    assert props["tags"]["tier"] == "prod" and g.violations(typ, props) == []
    unprotected = {**props, "deletion_protection": "disabled"}
    assert [r for r, _ in g.violations(typ, unprotected)] == ["prod-index-deletion-protected"]
    assert g.violations(typ, {**unprotected, "tags": {**props["tags"], "lifecycle": "retiring"}}) == []


def test_prod_index_retirement_passes_the_pack(data_upstream):
    from conftest import DATA_SECRETS
    from harness import run_layer

    run = run_layer("data", {"tier": "prod", "dbMultiAz": True, "pineconeIndexName": "ps-p-products-hybrid",
                             "pineconeRetiringIndexName": "ps-p-products"},
                    stack="prodretire", secrets=DATA_SECRETS, stack_outputs=data_upstream)
    assert all(g.violations(r.typ, r.inputs) == [] for r in run.resources)


def test_prod_vpc_needs_a_nat_gateway_per_az(network_prod_run):
    typ, props = broken(network_prod_run, "awsx:ec2:Vpc", natGateways={"strategy": "Single"})
    assert [r for r, _ in g.violations(typ, props)] == ["prod-nat-per-az"]


def test_prod_frontend_needs_two_tasks(compute_run):
    typ, props = broken(compute_run, "aws:ecs/service:Service", "-frontend")
    prod = {**props, "tags": {**props["tags"], "tier": "prod"}}
    assert [r for r, _ in g.violations(typ, prod)] == ["prod-frontend-redundant"]
    assert g.violations(typ, {**prod, "desiredCount": 2}) == []
    # Services without a load balancer (pelican, emu) scale on their own signals.
    _, pelican = broken(compute_run, typ, "-pelican")
    assert g.prod_frontend_redundant(typ, {**pelican, "tags": {"tier": "prod"}}) == []


def test_an_unknown_tier_is_refused(data_upstream):
    from conftest import DATA_SECRETS
    from harness import run_layer

    with pytest.raises(Exception, match="tier must be one of"):
        run_layer("data", {"tier": "production"}, stack="badtier", secrets=DATA_SECRETS, stack_outputs=data_upstream)


def _stack(run):
    """The run's custom resources as a stack policy sees them (props with computed names)."""
    return [(r.typ, r.outputs) for r in run.resources if r.custom]


@pytest.fixture(scope="module")
def compute_prod_run(upstream):
    from conftest import CERT
    from harness import run_layer

    return run_layer("compute", {"certificateArn": CERT, "tier": "prod", "frontendDesiredCount": 2,
                                 "frontendMaxTasks": 6, "wafRateLimit": 1000}, stack="prod", stack_outputs=upstream)


def test_a_prod_frontend_autoscaled_from_two_tasks_passes_every_rule(compute_prod_run):
    assert all(g.violations(r.typ, r.inputs) == [] for r in compute_prod_run.resources)
    assert g.stack_violations(_stack(compute_prod_run)) == []
    target = compute_prod_run.one("aws:appautoscaling/target:Target", "-frontend-scaling").inputs
    assert target["minCapacity"] == 2 and target["maxCapacity"] == 6


def test_a_prod_frontend_without_autoscaling_fails(compute_prod_run, compute_run):
    stack = _stack(compute_prod_run)
    unscaled = [(t, p) for t, p in stack
                if not (t == "aws:appautoscaling/target:Target" and "frontend" in p["resourceId"])]
    assert [r for r, _ in g.stack_violations(unscaled)] == ["prod-frontend-autoscaled"]
    # Another service's target (pelican keeps one task) does not count for the frontend.
    low = [(t, {**p, "minCapacity": 1}) if t == "aws:appautoscaling/target:Target" and "frontend" in p["resourceId"]
           else (t, p) for t, p in stack]
    assert [r for r, _ in g.stack_violations(low)] == ["prod-frontend-autoscaled"]
    # A dev stack's fixed single frontend is fine.
    assert g.stack_violations(_stack(compute_run)) == []


def test_the_stack_policy_runs_in_the_real_pack_with_unknowns(monkeypatch, compute_prod_run):
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    policy = _pack_policies(monkeypatch)["prod-frontend-autoscaled"]
    stack = _stack(compute_prod_run)

    def reported(pairs):
        found = []
        args = types.SimpleNamespace(resources=[types.SimpleNamespace(resource_type=t, props=unknown_checking_proxy(p))
                                                for t, p in pairs])
        policy.validate(args, lambda msg, urn=None: found.append(msg))
        return found

    assert reported(stack) == []
    # At a first preview the target's resourceId is unknown: a target keeping two tasks still counts.
    unknown_id = [(t, {**p, "resourceId": UNKNOWN_STRING_VALUE}) if t == "aws:appautoscaling/target:Target"
                  else (t, p) for t, p in stack]
    assert reported(unknown_id) == []
    assert reported([(t, p) for t, p in stack if t != "aws:appautoscaling/target:Target"])


def test_prod_editing_needs_the_waf_rate_rule(compute_prod_run, compute_run, compute_plain_run):
    stack = _stack(compute_prod_run)
    assert g.prod_editing_rate_limited(stack) == []
    no_waf = [(t, p) for t, p in stack if not t.startswith("aws:wafv2/")]
    assert [r for r, _ in g.stack_violations(no_waf)] == ["prod-editing-rate-limited"]
    # A web ACL without a rate-based rule does not count, nor one left unassociated.
    no_rate = [(t, {**p, "rules": []}) if t == "aws:wafv2/webAcl:WebAcl" else (t, p) for t, p in stack]
    assert g.prod_editing_rate_limited(no_rate)
    unassociated = [(t, p) for t, p in stack if t != "aws:wafv2/webAclAssociation:WebAclAssociation"]
    assert g.prod_editing_rate_limited(unassociated)
    # Dev stacks and throwaway plain-HTTP stacks (no editing) are not held to it.
    assert g.stack_violations(_stack(compute_run)) == []
    plain_prod = [(t, {**p, "tags": {**(p.get("tags") or {}), "tier": "prod"}}) if t.startswith("aws:") else (t, p)
                  for t, p in _stack(compute_plain_run)]
    assert g.prod_editing_rate_limited(plain_prod) == []
