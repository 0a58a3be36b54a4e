"""Hardening: TLS by default, tight egress, confused-deputy guards, failing deploys, rollback images,
tags on awsx children, the operator task, pelican's liveness alarm and a policy pack that works at preview."""
import base64
import importlib.metadata
import json
import re

import pulumi
import pytest

from conftest import CERT
from harness import EGRESS, REPO, ROLE, ROLE_POLICY, SERVICE, SG, TASKDEF, run_layer


def container(run, suffix):
    (definition,) = json.loads(run.one(TASKDEF, suffix).inputs["containerDefinitions"])
    return definition


def env(run, suffix):
    return {e["name"]: e["value"] for e in container(run, suffix)["environment"]}


def secret_names(run, suffix):
    return {s["name"] for s in container(run, suffix)["secrets"]}


def statements(run, suffix):
    return json.loads(run.one(ROLE_POLICY, suffix).inputs["policy"])["Statement"]


def sg_id(run, role):
    return f"{run.one(SG, '-' + role).name}-id"


# --- 1. TLS by default -------------------------------------------------------------------

def test_neither_certificate_nor_opt_in_fails_at_preview(upstream):
    with pytest.raises(Exception, match="HTTPS by default.*allowPlainHttp true"):
        run_layer("compute", stack_outputs=upstream, stack="notls")


@pytest.mark.parametrize("config, message", [
    ({"certificateArn": CERT, "allowPlainHttp": True}, "not both"),
    ({"allowPlainHttp": True, "domainName": "search.example.com"}, "domainName needs certificateArn"),
    ({"certificateArn": CERT, "hostedZoneId": "Z1"}, "hostedZoneId needs domainName"),
])
def test_contradictory_tls_settings_fail(upstream, config, message):
    with pytest.raises(Exception, match=message):
        run_layer("compute", config, stack_outputs=upstream, stack="badtls")


def test_https_default_redirects_port_80(compute_run):
    https = compute_run.one("aws:lb/listener:Listener", "-https").inputs
    assert https["port"] == 443 and https["certificateArn"] == CERT
    http = compute_run.one("aws:lb/listener:Listener", "-http").inputs
    assert [a["type"] for a in http["defaultActions"]] == ["redirect"]
    assert http["defaultActions"][0]["redirect"] == {"port": "443", "protocol": "HTTPS", "statusCode": "HTTP_301"}


def test_plain_http_turns_editing_off(compute_run, compute_plain_run, data_run):
    editor = {"EDITOR_USERNAME", "EDITOR_PASSWORD"}
    assert editor <= secret_names(compute_run, "-frontend")
    assert not editor & secret_names(compute_plain_run, "-frontend")
    # ... and the frontend may not even read the editor secret.
    editor_arn = data_run.exports["editorCredentialsSecretArn"]
    readable = [s for s in statements(compute_plain_run, "-frontend-execution") if s["Sid"] == "Secrets"]
    assert editor_arn not in readable[0]["Resource"]


def test_frontend_service_waits_for_every_listener(compute_run, compute_plain_run):
    for run, expected in ((compute_run, {"ps-dev-web-http", "ps-dev-web-https"}), (compute_plain_run, {"ps-dev-web-http"})):
        deps = run.opts(SERVICE, "ps-dev-frontend").depends_on
        assert {d._name for d in deps} == expected


def test_domain_gets_an_alias_record_and_is_the_service_url(compute_gpu_run, compute_run):
    record = compute_gpu_run.one("aws:route53/record:Record").inputs
    lb = compute_gpu_run.one("aws:lb/loadBalancer:LoadBalancer").outputs
    assert record["name"] == "search.example.com" and record["type"] == "A" and record["zoneId"] == "Z0123456789ABC"
    assert record["aliases"] == [{"name": lb["dnsName"], "zoneId": lb["zoneId"], "evaluateTargetHealth": True}]
    assert compute_gpu_run.exports["serviceUrl"] == "https://search.example.com"
    assert compute_run.of_type("aws:route53/record:Record") == []


# --- 2. Egress -----------------------------------------------------------------------------

def test_tasks_reach_only_https_and_the_database(compute_run, data_run):
    db_sg = data_run.exports["dbSecurityGroupId"]
    for role, db in (("frontend", True), ("pelican", True), ("operator", True), ("emu", False)):
        out = sorted(
            (r.inputs["ipProtocol"], r.inputs["fromPort"], r.inputs["toPort"],
             r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId"))
            for r in compute_run.of_type(EGRESS) if r.inputs["securityGroupId"] == sg_id(compute_run, role)
        )
        expected = [("tcp", 443, 443, "0.0.0.0/0")] + ([("tcp", 5432, 5432, db_sg)] if db else [])
        assert out == sorted(expected), role
    assert not [r for r in compute_run.of_type(EGRESS) if r.inputs["ipProtocol"] == "-1"]


# --- 3. GPU hosts: no metadata service for tasks; capacity checked ---------------------------

def test_gpu_hosts_block_imds_for_tasks(compute_gpu_run):
    lt = compute_gpu_run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    script = base64.b64decode(lt["userData"]).decode()
    assert "echo ECS_AWSVPC_BLOCK_IMDS=true >> /etc/ecs/ecs.config" in script.splitlines()
    assert lt["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_emu_max_tasks_must_fit_on_the_gpu_hosts(upstream):
    with pytest.raises(Exception, match="emuMaxTasks=4 cannot be placed.*gpuMaxInstances=2"):
        run_layer("compute", {"emuGpu": True, "certificateArn": CERT, "emuMaxTasks": 4, "gpuMaxInstances": 2},
                  stack_outputs=upstream, stack="gpufit")
    from infra.gpu import check_gpu_capacity, gpu_instances_for, gpus_per_instance

    # Left at 0, the hosts are sized for the tasks: one g4dn.xlarge per task, 4 tasks per g5.12xlarge.
    assert gpu_instances_for("g4dn.xlarge", 0, 4) == 4 and gpu_instances_for("g5.12xlarge", 0, 5) == 2
    assert gpu_instances_for("g4dn.xlarge", 3, 1) == 3

    assert gpus_per_instance("g5.12xlarge") == 4 and gpus_per_instance("g4dn.xlarge") == 1
    check_gpu_capacity("g5.12xlarge", 1, 4)
    with pytest.raises(ValueError, match="supported"):
        gpus_per_instance("p9.huge")


# --- 4. Confused deputy ----------------------------------------------------------------------

def test_ecs_trust_policies_name_this_account(compute_run):
    account = "123456789012"
    for app in ("frontend", "pelican", "emu", "operator"):
        (task,) = json.loads(compute_run.one(ROLE, f"-{app}-task").inputs["assumeRolePolicy"])["Statement"]
        assert task["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}
        assert task["Condition"] == {"StringEquals": {"aws:SourceAccount": account},
                                     "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:us-east-1:{account}:*"}}
        (execution,) = json.loads(compute_run.one(ROLE, f"-{app}-execution").inputs["assumeRolePolicy"])["Statement"]
        assert execution["Condition"] == {"StringEquals": {"aws:SourceAccount": account}}


def test_key_and_topic_admit_only_this_accounts_alarms(messaging_run):
    condition = {"StringEquals": {"aws:SourceAccount": "123456789012"},
                 "ArnLike": {"aws:SourceArn": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:*"}}
    key = json.loads(messaging_run.one("aws:kms/key:Key").inputs["policy"])
    (cloudwatch,) = [s for s in key["Statement"] if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert cloudwatch["Condition"] == condition
    topic = messaging_run.one("aws:sns/topic:Topic")
    policy = messaging_run.one("aws:sns/topicPolicy:TopicPolicy").inputs
    assert policy["arn"] == topic.outputs["arn"]
    (publish,) = json.loads(policy["policy"])["Statement"]
    assert publish["Action"] == "sns:Publish" and publish["Resource"] == topic.outputs["arn"]
    assert publish["Condition"] == condition


# --- 5. Deploys that crash-loop fail ----------------------------------------------------------

def test_services_wait_for_steady_state_with_a_deadline(compute_run):
    for app in ("frontend", "pelican", "emu"):
        svc = compute_run.one(SERVICE, f"-{app}").inputs
        assert svc["waitForSteadyState"] is True
        assert svc["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
        timeouts = compute_run.opts(SERVICE, f"ps-dev-{app}").custom_timeouts
        assert (timeouts.create, timeouts.update) == ("20m", "20m")


# --- 6. Names that collide, snapshots, major upgrades ---------------------------------------

def test_index_name_carries_the_stack(data_run, data_prod_run):
    from infra.vector_index import default_index_name

    assert data_run.one("pinecone:index/index:Index").inputs["name"] == "ps-dev-products"
    assert data_prod_run.one("pinecone:index/index:Index").inputs["name"] == "ps-prod-products"
    assert default_index_name("ps-Feature_X.1") == "ps-feature-x-1-products"
    assert len(default_index_name("ps-" + "a" * 60)) <= 45


def test_index_name_can_be_pinned(data_upstream):
    from conftest import DATA_SECRETS

    run = run_layer("data", {"pineconeIndexName": "products"}, secrets=DATA_SECRETS, stack="legacy",
                    stack_outputs=data_upstream)
    assert run.one("pinecone:index/index:Index").inputs["name"] == "products"


def test_final_snapshot_is_unique_per_instance_and_major_upgrades_are_opt_in(data_run, data_upstream):
    db = data_run.one("aws:rds/instance:Instance")
    assert db.inputs["identifier"] == "ps-dev-db"
    assert re.fullmatch(r"ps-dev-db-final-\d{14}", db.inputs["finalSnapshotIdentifier"])
    assert "finalSnapshotIdentifier" in data_run.opts("aws:rds/instance:Instance", "ps-dev-db").ignore_changes
    assert db.inputs["allowMajorVersionUpgrade"] is False
    from conftest import DATA_SECRETS

    upgraded = run_layer("data", {"dbEngineVersion": "18", "dbAllowMajorVersionUpgrade": True},
                         secrets=DATA_SECRETS, stack="dev", stack_outputs=data_upstream)
    inputs = upgraded.one("aws:rds/instance:Instance").inputs
    assert inputs["allowMajorVersionUpgrade"] is True and inputs["engineVersion"] == "18"
    assert upgraded.one("aws:rds/parameterGroup:ParameterGroup").inputs["family"] == "postgres18"


# --- 7. Rollback images ----------------------------------------------------------------------

def test_ecr_keeps_the_last_n_images_tagged_or_not(compute_run, upstream):
    (rule,) = json.loads(compute_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "-emu").inputs["policy"])["rules"]
    assert rule["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 20}
    run = run_layer("compute", {"certificateArn": CERT, "ecrKeepImages": 5}, stack_outputs=upstream, stack="keep")
    (rule,) = json.loads(run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", "-emu").inputs["policy"])["rules"]
    assert rule["selection"]["countNumber"] == 5


# --- 8. Tags reach awsx's children ------------------------------------------------------------

@pytest.mark.parametrize("typ", ["aws:ec2/subnet:Subnet", "aws:ec2/natGateway:NatGateway", "aws:ec2/eip:Eip",
                                 "aws:ec2/routeTable:RouteTable", "aws:ec2/internetGateway:InternetGateway"])
def test_stack_transform_tags_awsx_children(network_run, typ):
    """awsx creates these in its own process; only a stack transform reaches them, so the
    network layer's transform is called here as the engine calls it for each child."""
    (transform,) = network_run.stack_transforms
    own = {"Name": "ps-dev-private-1"}
    result = transform(pulumi.ResourceTransformArgs(custom=True, type_=typ, name="child",
                                                    props={"tags": own}, opts=pulumi.ResourceOptions()))
    assert result.props["tags"] == {"project": "productsearch", "layer": "network", "stack": "dev",
                                    "tier": "dev", "managed-by": "pulumi", **own}
    # Components and untaggable types are left alone.
    assert transform(pulumi.ResourceTransformArgs(custom=False, type_="awsx:ec2:Vpc", name="v", props={},
                                                  opts=pulumi.ResourceOptions())) is None
    assert transform(pulumi.ResourceTransformArgs(custom=True, type_="aws:ec2/route:Route", name="r", props={},
                                                  opts=pulumi.ResourceOptions())) is None


# --- 9. Pins and the RDS log group --------------------------------------------------------------

PINNED = ("pulumi", "pulumi-aws", "pulumi-awsx", "pulumi-docker-build", "pinecone-pulumi", "pulumi-policy")


@pytest.mark.parametrize("path", ["network", "data", "messaging", "compute", "policy", "requirements/dev.txt"])
def test_provider_versions_are_pinned_to_what_the_tests_ran(path):
    file = REPO / path / "requirements.txt" if "/" not in path else REPO / path
    found = 0
    for line in file.read_text().splitlines():
        name = re.split(r"[<>=!~\[ ]", line.strip(), maxsplit=1)[0].lower()
        if name in PINNED:
            found += 1
            assert line.strip() == f"{name}=={importlib.metadata.version(name)}", f"{file}: {line}"
    assert found


def test_rds_log_group_exists_first_with_retention(data_run):
    group = data_run.one("aws:cloudwatch/logGroup:LogGroup", "-db-postgresql").inputs
    assert group["name"] == "/aws/rds/instance/ps-dev-db/postgresql" and group["retentionInDays"] == 30
    deps = data_run.opts("aws:rds/instance:Instance", "ps-dev-db").depends_on
    assert [d._name for d in deps] == ["ps-dev-db-postgresql"]
    assert data_run.one("aws:rds/instance:Instance").inputs["enabledCloudwatchLogsExports"] == ["postgresql"]


# --- 10. The operator task ----------------------------------------------------------------------

def test_operator_task_has_its_env_secrets_and_role(compute_run, data_run, messaging_run):
    d, m = data_run.exports, messaging_run.exports
    td = compute_run.one(TASKDEF, "-operator").inputs
    assert td["requiresCompatibilities"] == ["FARGATE"]
    assert td["taskRoleArn"] == compute_run.one(ROLE, "-operator-task").outputs["arn"]
    assert compute_run.of_type(SERVICE) and not [s for s in compute_run.of_type(SERVICE) if "operator" in s.name]
    c = container(compute_run, "-operator")
    assert c["name"] == "operator"
    assert c["image"] == container(compute_run, "-pelican")["image"]  # pelican's image
    e = env(compute_run, "-operator")
    assert e["SQS_QUEUE_URL"] == m["jobsQueueUrl"] and e["SQS_DLQ_URL"] == m["dlqUrl"]
    assert e["PGSSLMODE"] == "verify-full" and e["PINECONE_INDEX"] == "ps-dev-products"
    assert (e["CLOUDWATCH_NAMESPACE"], e["DEPLOYMENT_NAME"]) == ("ProductSearch", "ps-dev")
    assert secret_names(compute_run, "-operator") == {"PINECONE_API_KEY"}
    # The operator task is the database's administrator (migrate, grant-roles) and reads the
    # app roles' secrets to set their passwords.
    assert e["DATABASE_SECRET_ARN"] == d["dbSecretArn"]
    assert (e["PELICAN_DATABASE_SECRET_ARN"], e["FRONTEND_DATABASE_SECRET_ARN"]) == (
        d["pelicanDbSecretArn"], d["frontendDbSecretArn"])
    grants = {s["Sid"]: (sorted(s["Action"]), s["Resource"]) for s in statements(compute_run, "-operator-task")}
    assert grants == {
        "JobsQueueSend": (["sqs:GetQueueAttributes", "sqs:SendMessage"], [m["jobsQueueArn"]]),
        "DeadLetterRedrive": (sorted(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                      "sqs:GetQueueAttributes"]), [m["dlqArn"]]),
        "PutMetrics": (["cloudwatch:PutMetricData"], ["*"]),
        "DatabaseSecret": (["secretsmanager:GetSecretValue"], [d["dbSecretArn"]]),
        "AppRoleSecrets": (["secretsmanager:GetSecretValue"], [d["pelicanDbSecretArn"], d["frontendDbSecretArn"]]),
    }
    (secrets,) = [s for s in statements(compute_run, "-operator-execution") if s["Sid"] == "Secrets"]
    assert sorted(secrets["Resource"]) == [d["pineconeOperatorKeySecretArn"]]


# --- 11. Pelican's liveness alarm -----------------------------------------------------------------

def test_pelican_may_publish_only_its_namespace(compute_run):
    (put,) = [s for s in statements(compute_run, "-pelican-task") if s["Sid"] == "PutMetrics"]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": "ProductSearch"}}
    env_ = env(compute_run, "-pelican")
    assert (env_["CLOUDWATCH_NAMESPACE"], env_["DEPLOYMENT_NAME"]) == ("ProductSearch", "ps-dev")


def test_silent_or_lagging_pelican_alarms(compute_run, messaging_run, upstream):
    alarm = compute_run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-unshipped-changes").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("ProductSearch", "OldestUnshippedChangeAgeSeconds")
    assert alarm["dimensions"] == {"Deployment": "ps-dev"}
    assert (alarm["statistic"], alarm["period"], alarm["evaluationPeriods"]) == ("Maximum", 300, 1)
    assert alarm["threshold"] == 600 and alarm["comparisonOperator"] == "GreaterThanThreshold"
    assert alarm["treatMissingData"] == "breaching"
    topic = messaging_run.exports["topicArn"]
    assert alarm["alarmActions"] == [topic] and alarm["okActions"] == [topic]
    run = run_layer("compute", {"certificateArn": CERT, "unshippedChangeAlarmSeconds": 120},
                    stack_outputs=upstream, stack="alarm")
    assert run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-unshipped-changes").inputs["threshold"] == 120


def test_failed_editor_logins_are_counted_and_alarm(compute_run, messaging_run):
    metric_filter = compute_run.one("aws:cloudwatch/logMetricFilter:LogMetricFilter", "-login-failures").inputs
    frontend_logs = compute_run.one("aws:cloudwatch/logGroup:LogGroup", "-frontend")
    assert metric_filter["logGroupName"] == frontend_logs.outputs["name"]
    assert metric_filter["pattern"] == '{ $.msg = "editor login failed" }'  # frontend.editing's log line
    transform = metric_filter["metricTransformation"]
    alarm = compute_run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-login-failures").inputs
    assert (alarm["namespace"], alarm["metricName"]) == (transform["namespace"], transform["name"])
    assert alarm["statistic"] == "Sum" and alarm["threshold"] == 20 and alarm["period"] == 300
    assert alarm["alarmActions"] == [messaging_run.exports["topicArn"]]


def test_no_login_alarm_when_editing_is_off(compute_plain_run):
    assert not compute_plain_run.of_type("aws:cloudwatch/logMetricFilter:LogMetricFilter")
