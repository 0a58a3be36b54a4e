import json
from pathlib import Path

import pytest

from harness import EGRESS, IMAGE, INGRESS, POLICY, REPO, ROLE_POLICY, SERVICE, SG, TASKDEF, run_layer
from infra import iam

APPS = ("frontend", "pelican", "emu")


def sg_id(run, role):
    return f"{run.one(SG, '-' + role).name}-id"


def container(run, app):
    (definition,) = json.loads(run.one(TASKDEF, f"-{app}").inputs["containerDefinitions"])
    return definition


def env(run, app):
    return {e["name"]: e["value"] for e in container(run, app)["environment"]}


def secrets(run, app):
    return {s["name"]: s["valueFrom"] for s in container(run, app)["secrets"]}


def statements(run, name_suffix):
    doc = json.loads(run.one(ROLE_POLICY, name_suffix).inputs["policy"])
    return {s["Sid"]: (sorted(s["Action"]), sorted(s["Resource"])) for s in doc["Statement"]}


# --- security groups -------------------------------------------------------------------

def rules(run, typ):
    return [r.inputs for r in run.of_type(typ)]


def test_internet_reaches_only_the_alb_listener(compute_run, compute_plain_run, compute_gpu_run):
    for run, ports, cidr in ((compute_run, [80, 443], "0.0.0.0/0"), (compute_plain_run, [80], "203.0.113.10/32"),
                             (compute_gpu_run, [80, 443], "0.0.0.0/0")):
        open_rules = [r for r in rules(run, INGRESS) if r.get("cidrIpv4")]
        assert sorted(r["fromPort"] for r in open_rules) == ports
        for r in open_rules:
            assert r["securityGroupId"] == sg_id(run, "alb")
            assert r["cidrIpv4"] == cidr and r["ipProtocol"] == "tcp"
            assert r["fromPort"] == r["toPort"]


def test_exact_security_group_graph(compute_run, data_run):
    run = compute_run
    db_sg = data_run.exports["dbSecurityGroupId"]
    referenced = sorted(
        (r["securityGroupId"], r["referencedSecurityGroupId"], r["fromPort"], r["toPort"])
        for r in rules(run, INGRESS) if r.get("referencedSecurityGroupId")
    )
    assert referenced == sorted([
        (sg_id(run, "frontend"), sg_id(run, "alb"), 7860, 7860),   # ALB -> frontend port only
        (db_sg, sg_id(run, "frontend"), 5432, 5432),                # frontend -> database
        (db_sg, sg_id(run, "pelican"), 5432, 5432),                 # pelican -> database
        (db_sg, sg_id(run, "operator"), 5432, 5432),                # operator task -> database
    ])
    targets = {r["securityGroupId"] for r in rules(run, INGRESS)}
    for role in ("emu", "pelican", "operator"):
        assert sg_id(run, role) not in targets
    # The ALB may only talk to the frontend port.
    alb_out = [r for r in rules(run, EGRESS) if r["securityGroupId"] == sg_id(run, "alb")]
    assert alb_out == [dict(alb_out[0], referencedSecurityGroupId=sg_id(run, "frontend"),
                            fromPort=7860, toPort=7860, ipProtocol="tcp")]
    for sg in run.of_type(SG):
        assert "ingress" not in sg.inputs and "egress" not in sg.inputs


# --- load balancer ---------------------------------------------------------------------

def test_alb_public_sticky_health_checked(compute_run, compute_plain_run, network_run):
    lb = compute_run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["internal"] is False and lb["subnets"] == network_run.exports["publicSubnetIds"]
    assert lb["securityGroups"] == [sg_id(compute_run, "alb")]
    tg = compute_run.one("aws:lb/targetGroup:TargetGroup").inputs
    assert tg["port"] == 7860 and tg["targetType"] == "ip"
    assert tg["healthCheck"]["path"] == "/healthz" and tg["healthCheck"]["matcher"] == "200"
    assert tg["stickiness"]["enabled"] is True and tg["stickiness"]["type"] == "lb_cookie"
    # Plain HTTP only by opt-in: then port 80 forwards.
    (listener,) = compute_plain_run.of_type("aws:lb/listener:Listener")
    assert listener.inputs["port"] == 80 and listener.inputs["defaultActions"][0]["type"] == "forward"
    assert compute_plain_run.exports["serviceUrl"].startswith("http://")


def test_https_with_certificate_redirects_http(compute_gpu_run):
    https = compute_gpu_run.one("aws:lb/listener:Listener", "-https").inputs
    assert https["port"] == 443 and https["protocol"] == "HTTPS"
    assert https["certificateArn"].startswith("arn:aws:acm:")
    assert https["sslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    http = compute_gpu_run.one("aws:lb/listener:Listener", "-http").inputs
    assert http["defaultActions"][0]["redirect"]["protocol"] == "HTTPS"
    assert compute_gpu_run.exports["serviceUrl"].startswith("https://")


# --- services ----------------------------------------------------------------------------

def test_three_clusters_fargate_private(compute_run, network_run):
    clusters = compute_run.of_type("aws:ecs/cluster:Cluster")
    assert len(clusters) == 3
    for app in APPS:
        svc = compute_run.one(SERVICE, f"-{app}").inputs
        cluster = compute_run.one("aws:ecs/cluster:Cluster", f"-{app}")
        assert svc["cluster"] == cluster.outputs["arn"]
        if app != "emu":  # emu's strategy puts most of its tasks on Fargate Spot
            assert svc["launchType"] == "FARGATE"
        net = svc["networkConfiguration"]
        assert net["assignPublicIp"] is False
        assert net["subnets"] == network_run.exports["privateSubnetIds"]
        assert net["securityGroups"] == [sg_id(compute_run, app)]
        assert compute_run.one(TASKDEF, f"-{app}").inputs["requiresCompatibilities"] == ["FARGATE"]
    fe = compute_run.one(SERVICE, "-frontend").inputs
    assert fe["loadBalancers"] == [{
        "targetGroupArn": compute_run.one("aws:lb/targetGroup:TargetGroup").outputs["arn"],
        "containerName": "frontend", "containerPort": 7860}]


def test_images_built_from_apps_pushed_with_ecr_token_and_deployed_by_digest(compute_run):
    for app in APPS:
        repo = compute_run.one("aws:ecr/repository:Repository", f"-{app}")
        assert repo.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
        lifecycle = json.loads(compute_run.one("aws:ecr/lifecyclePolicy:LifecyclePolicy", f"-{app}")
                               .inputs["policy"])
        assert [r["action"]["type"] for r in lifecycle["rules"]] == ["expire"]
        image = compute_run.one(IMAGE, f"-{app}")
        assert image.inputs["context"]["location"].endswith("/apps")
        assert image.inputs["dockerfile"]["location"].endswith(f"/apps/{app}/Dockerfile")
        assert image.inputs["platforms"] == ["linux/amd64"] and image.inputs["push"] is True
        assert image.inputs["tags"] == [f"{repo.outputs['repositoryUrl']}:dev"]
        (registry,) = image.inputs["registries"]
        assert registry["address"] == repo.outputs["repositoryUrl"]
        assert registry["password"] == "token-password"
        assert any(p.startswith("registries") for p in image.secret_paths)
        # Deployed by the pushed digest in the stack's own repository, never by the moving tag.
        assert container(compute_run, app)["image"] == f"{repo.outputs['repositoryUrl']}@{image.outputs['digest']}"
    assert any(t == "aws:ecr/getAuthorizationToken:getAuthorizationToken" for t, _ in compute_run.calls)
    assert compute_run.one(IMAGE, "-emu").inputs["buildArgs"] == {"EMU_VARIANT": "cpu"}
    assert compute_run.of_type("docker:index/image:Image") == []


def test_environment_contract(compute_run, data_run, messaging_run):
    d, m = data_run.exports, messaging_run.exports
    db = {"PGHOST": d["dbAddress"], "PGPORT": "5432", "PGDATABASE": "products", "PGSSLMODE": "verify-full"}
    common = {"AWS_REGION": "us-east-1", "LOG_LEVEL": "INFO"}
    pinecone = {"PINECONE_HOST": d["pineconeIndexHost"], "PINECONE_INDEX": "ps-dev-products",
                "PINECONE_NAMESPACE": "products", "EMBEDDING_DIMENSION": "384", "PINECONE_INDEX_API": "vectors"}
    metrics = {"CLOUDWATCH_NAMESPACE": "ProductSearch", "DEPLOYMENT_NAME": "ps-dev"}
    # Each app connects as its own database role, never as the master user.
    assert env(compute_run, "pelican") == {**common, **db, **metrics, "SQS_QUEUE_URL": m["jobsQueueUrl"],
                                           "DATABASE_SECRET_ARN": d["pelicanDbSecretArn"]}
    assert env(compute_run, "emu") == {
        **common, **pinecone, "SQS_QUEUE_URL": m["jobsQueueUrl"], "SQS_DLQ_URL": m["dlqUrl"],
        "SNS_TOPIC_ARN": m["topicArn"], "EMBEDDING_DEVICE": "cpu", "EMBEDDING_BATCH_SIZE": "64",
        "EMU_VISIBILITY_TIMEOUT_SECONDS": "270", "EMU_STOP_TIMEOUT_SECONDS": "120"}
    assert env(compute_run, "frontend") == {
        **common, **db, **pinecone, "SQS_QUEUE_URL": m["jobsQueueUrl"], "SQS_DLQ_URL": m["dlqUrl"],
        "DATABASE_SECRET_ARN": d["frontendDbSecretArn"],
        "FRONTEND_PORT": "7860", "LOAD_BALANCER_IDLE_TIMEOUT_SECONDS": "120",
        "FRONTEND_TRUSTED_PROXIES": "10.0.0.0/16", "HOME": "/scratch", "TMPDIR": "/scratch",
        "GRADIO_TEMP_DIR": "/scratch", "HF_HOME": "/scratch/huggingface"}
    ed = d["editorCredentialsSecretArn"]
    # The database credentials are read (and re-read after a rotation) by the apps, not injected.
    assert secrets(compute_run, "pelican") == {}
    assert secrets(compute_run, "emu") == {"PINECONE_API_KEY": d["pineconeEmuKeySecretArn"]}
    assert secrets(compute_run, "frontend") == {
        "PINECONE_API_KEY": d["pineconeFrontendKeySecretArn"],
        "EDITOR_USERNAME": f"{ed}:username::", "EDITOR_PASSWORD": f"{ed}:password::"}
    assert container(compute_run, "frontend")["portMappings"] == [{"containerPort": 7860, "protocol": "tcp"}]


def test_env_values_render_stack_reference_numbers_as_integers():
    from infra.task_definition import env_value

    assert env_value(5432.0) == "5432" and env_value(0.5) == "0.5"
    assert env_value(True) == "true" and env_value("x") == "x"


# --- IAM -----------------------------------------------------------------------------------

def test_task_roles_grant_only_listed_actions_on_exact_arns(compute_run, messaging_run, data_run):
    m = messaging_run.exports
    def database_secret(app):  # its own role's secret only: not the master secret, not the other app's
        return {"DatabaseSecret": (["secretsmanager:GetSecretValue"], [data_run.exports[f"{app}DbSecretArn"]])}

    assert statements(compute_run, "-pelican-task") == {
        "JobsQueueSend": (sorted(["sqs:SendMessage", "sqs:GetQueueAttributes"]), [m["jobsQueueArn"]]),
        "PutMetrics": (["cloudwatch:PutMetricData"], ["*"]), **database_secret("pelican")}
    assert statements(compute_run, "-emu-task") == {
        "JobsQueueConsume": (sorted(["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
                                     "sqs:GetQueueAttributes"]), [m["jobsQueueArn"]]),
        "DeadLetterSend": (["sqs:SendMessage"], [m["dlqArn"]]),
        "DeadLetterNotify": (["sns:Publish"], [m["topicArn"]]),
        "DeadLetterTopicKey": (["kms:Decrypt", "kms:GenerateDataKey"], [m["topicKmsKeyArn"]]),
    }
    assert statements(compute_run, "-frontend-task") == {
        "QueueStatus": (["sqs:GetQueueAttributes"], sorted([m["jobsQueueArn"], m["dlqArn"]])),
        **database_secret("frontend")}
    for app in APPS:
        td = compute_run.one(TASKDEF, f"-{app}").inputs
        assert td["taskRoleArn"] == compute_run.one("aws:iam/role:Role", f"-{app}-task").outputs["arn"]
        assert td["executionRoleArn"] == compute_run.one("aws:iam/role:Role", f"-{app}-execution").outputs["arn"]
        trust = json.loads(compute_run.one("aws:iam/role:Role", f"-{app}-task").inputs["assumeRolePolicy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "ecs-tasks.amazonaws.com"}


def test_execution_roles_read_only_their_own_secrets(compute_run, data_run):
    d = data_run.exports
    # The database secret is read by the apps' task roles (it rotates), not injected by the agent.
    own = {
        "pelican": [],
        "emu": [d["pineconeEmuKeySecretArn"]],
        "frontend": [d["pineconeFrontendKeySecretArn"], d["editorCredentialsSecretArn"]],
    }
    for app in APPS:
        grants = statements(compute_run, f"-{app}-execution")
        repo_arn = compute_run.one("aws:ecr/repository:Repository", f"-{app}").outputs["arn"]
        log_arn = compute_run.one("aws:cloudwatch/logGroup:LogGroup", f"-{app}").outputs["arn"]
        expected = {
            "EcrToken": (["ecr:GetAuthorizationToken"], ["*"]),
            "EcrPull": (sorted(iam.ECR_PULL), [repo_arn]),
            "Logs": (sorted(iam.LOGS_WRITE), [f"{log_arn}:log-stream:*"]),
        }
        if own[app]:
            expected["Secrets"] = (["secretsmanager:GetSecretValue"], sorted(own[app]))
        assert grants == expected


# --- autoscaling -------------------------------------------------------------------------

def test_autoscaling_bounds_come_from_the_peak_rate_and_nothing_scales_on_cpu(compute_run):
    # At the default peakChangesPerSecond (500): emu ceil(2 x 500 / 250) = 4, pelican min + 1 = 2.
    for app, (lo, hi) in (("pelican", (1, 2)), ("emu", (1, 4))):
        target = compute_run.one("aws:appautoscaling/target:Target", f"-{app}-scaling").inputs
        cluster = compute_run.exports["clusterNames"][app]
        service = compute_run.exports["serviceNames"][app]
        assert target["resourceId"] == f"service/{cluster}/{service}"
        assert (target["minCapacity"], target["maxCapacity"]) == (lo, hi)
        assert target["scalableDimension"] == "ecs:service:DesiredCount"
        (policy,) = [p for p in compute_run.of_type(POLICY) if f"-{app}-" in p.name]
        assert policy.inputs["resourceId"] == target["resourceId"]
        assert policy.inputs["policyType"] == "TargetTrackingScaling"
        tt = policy.inputs["targetTrackingScalingPolicyConfiguration"]
        assert "predefinedMetricSpecification" not in tt
        assert (tt["scaleOutCooldown"], tt["scaleInCooldown"]) == (60, 300)
    assert not [p for p in compute_run.of_type(POLICY) if "frontend" in p.name]


def test_emu_scales_on_changes_waiting_per_desired_task(compute_run):
    from pelican.service import WAITING_METRIC

    policy = compute_run.one(POLICY, "-emu-changes-waiting").inputs
    tt = policy["targetTrackingScalingPolicyConfiguration"]
    # What one CPU task clears in about a minute: 250 changes/s (an estimate) x 60 s.
    assert tt["targetValue"] == 15_000
    metrics = {m["id"]: m for m in tt["customizedMetricSpecification"]["metrics"]}
    work = metrics["work"]["metricStat"]
    # pelican's metric, by its namespace and deployment, at its largest over the minute:
    # several pelicans put the same outbox-wide figure.
    assert (work["metric"]["namespace"], work["metric"]["metricName"]) == ("ProductSearch", WAITING_METRIC)
    assert work["metric"]["dimensions"] == [{"name": "Deployment", "value": "ps-dev"}]
    assert work["stat"] == "Maximum"
    tasks = metrics["tasks"]["metricStat"]["metric"]
    assert (tasks["namespace"], tasks["metricName"]) == ("ECS/ContainerInsights", "DesiredTaskCount")
    assert {d["name"]: d["value"] for d in tasks["dimensions"]} == {
        "ClusterName": compute_run.exports["clusterNames"]["emu"],
        "ServiceName": compute_run.exports["serviceNames"]["emu"]}
    assert metrics["per_task"]["expression"] == "work / tasks"
    assert [m["id"] for m in metrics.values() if m["returnData"]] == ["per_task"]
    # The divisor needs Container Insights on emu's cluster.
    cluster = compute_run.one("aws:ecs/cluster:Cluster", "-emu")
    assert {"name": "containerInsights", "value": "enabled"} in cluster.inputs["settings"]


def test_pelican_scales_on_the_age_of_its_oldest_unshipped_change(compute_run):
    from pelican.service import AGE_METRIC

    tt = compute_run.one(POLICY, "-pelican-unshipped-age").inputs["targetTrackingScalingPolicyConfiguration"]
    assert tt["targetValue"] == 30
    # The same metric pelican puts and its alarm reads.
    assert tt["customizedMetricSpecification"] == {
        "namespace": "ProductSearch", "metricName": AGE_METRIC,
        "dimensions": [{"name": "Deployment", "value": "ps-dev"}], "statistic": "Maximum"}
    alarm = compute_run.one("aws:cloudwatch/metricAlarm:MetricAlarm", "-unshipped-changes").inputs
    assert (alarm["namespace"], alarm["metricName"]) == ("ProductSearch", AGE_METRIC)


# --- GPU switch ----------------------------------------------------------------------------

def test_gpu_switch_moves_emu_to_ec2_capacity_provider(compute_run, compute_gpu_run):
    assert compute_run.of_type("aws:ecs/capacityProvider:CapacityProvider") == []
    run = compute_gpu_run
    cp = run.one("aws:ecs/capacityProvider:CapacityProvider")
    asg = run.one("aws:autoscaling/group:Group")
    provider = cp.inputs["autoScalingGroupProvider"]
    assert provider["autoScalingGroupArn"] == asg.outputs["arn"]
    assert provider["managedScaling"]["status"] == "ENABLED"
    assert provider["managedTerminationProtection"] == "ENABLED" and asg.inputs["protectFromScaleIn"] is True
    attach = run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders").inputs
    assert attach["clusterName"] == run.exports["clusterNames"]["emu"]
    assert attach["capacityProviders"] == [cp.outputs["name"]]
    emu = run.one(SERVICE, "-emu").inputs
    assert "launchType" not in emu
    assert emu["capacityProviderStrategies"] == [{"capacityProvider": cp.outputs["name"], "weight": 1, "base": 0}]
    td = run.one(TASKDEF, "-emu").inputs
    assert td["requiresCompatibilities"] == ["EC2"]
    assert container(run, "emu")["resourceRequirements"] == [{"type": "GPU", "value": "1"}]
    assert env(run, "emu")["EMBEDDING_DEVICE"] == "cuda"
    assert run.one(IMAGE, "-emu").inputs["buildArgs"] == {"EMU_VARIANT": "cuda"}
    lt = run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert lt["instanceType"] == "g4dn.xlarge" and lt["imageId"] == "ami-0gpu1234"
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["vpcSecurityGroupIds"] == [sg_id(run, "emu")]
    ssm = [a for t, a in run.calls if t == "aws:ssm/getParameter:getParameter"]
    assert ssm and "/gpu/" in ssm[0]["name"]
    # The other services stay on Fargate.
    for app in ("frontend", "pelican"):
        assert run.one(SERVICE, f"-{app}").inputs["launchType"] == "FARGATE"
    assert run.exports["emuCapacity"] == "gpu-ec2" and compute_run.exports["emuCapacity"] == "fargate-spot"
    # Spot is for Fargate tasks only: the GPU cluster has only its EC2 capacity provider.
    assert "-emu-fargate" not in {r.name[-len("-emu-fargate"):] for r in
                                  run.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders")}


# --- logs, dashboard, exports -------------------------------------------------------------

def test_log_groups_with_retention_used_by_containers(compute_run):
    for app in APPS:
        group = compute_run.one("aws:cloudwatch/logGroup:LogGroup", f"-{app}")
        assert group.inputs["retentionInDays"] == 30
        opts = container(compute_run, app)["logConfiguration"]["options"]
        assert opts["awslogs-group"] == group.inputs["name"]


def test_dashboard_covers_alb_services_and_queues(compute_run, messaging_run):
    body = json.loads(compute_run.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    text = json.dumps(body)
    for needle in ("RequestCount", "CPUUtilization", "ChangesWaiting", "OldestUnshippedChangeAgeSeconds",
                   messaging_run.exports["jobsQueueName"],
                   messaging_run.exports["dlqName"], *compute_run.exports["serviceNames"].values()):
        assert needle in text


def test_exports(compute_run):
    e = compute_run.exports
    for key in ("clusterNames", "serviceNames", "repositoryUrls"):
        assert set(e[key]) == set(APPS)
    assert e["serviceUrl"] == f"https://{e['albDnsName']}"
    assert e["operatorTaskDefinitionArn"] == compute_run.one(TASKDEF, "-operator").outputs["arn"]
    assert e["operatorSecurityGroupId"] == sg_id(compute_run, "operator")
    assert e["operatorLogGroupName"] == "/ecs/ps-dev/operator"
    assert e["privateSubnetIds"] and e["operatorClusterName"] == e["clusterNames"]["pelican"]


def test_stack_references_default_to_same_org_and_stack(compute_run):
    assert sorted(compute_run.stack_refs) == ["acme/data/dev", "acme/messaging/dev", "acme/network/dev"]


def test_missing_messaging_output_fails(upstream):
    from harness import run_layer

    broken = {**upstream, "messaging": {k: v for k, v in upstream["messaging"].items() if k != "topicArn"}}
    with pytest.raises(Exception, match="topicArn"):
        run_layer("compute", {"certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"},
                  stack_outputs=broken, stack="broken")


def test_image_context_root_has_the_dockerignore_every_builder_reads(compute_run):
    # The builder may read only <context>/.dockerignore, not <Dockerfile>.dockerignore.
    contexts = {Path(i.inputs["context"]["location"]) for i in compute_run.of_type(IMAGE)}
    assert contexts == {REPO / "apps"}
    ignored = (REPO / "apps" / ".dockerignore").read_text().split()
    assert {"**/__pycache__", "**/*.egg-info", "**/.venv"} <= set(ignored)


def test_a_next_index_reaches_emu_the_frontend_and_the_operator_task(upstream):
    """During an index migration (data's pineconeNextIndexName) the next index's host goes
    to what writes it (emu), what may serve from it (the frontend) and what builds and
    switches (the operator task's `pelican migrate-index`); without one, no variable."""
    from harness import run_layer

    next_host = "ps-dev-products-hybrid-x1y2.svc.aped-4627-b74a.pinecone.io"
    data = {**upstream["data"], "pineconeNextIndexHost": next_host, "pineconeNextIndexName": "ps-dev-products-hybrid",
            "pineconeNextIndexApi": "documents"}
    run = run_layer("compute", {"certificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/abc"},
                    stack_outputs={**upstream, "data": data}, stack="migrating")
    for app in ("emu", "frontend", "operator"):
        assert env(run, app)["PINECONE_NEXT_HOST"] == next_host, app
        assert env(run, app)["PINECONE_NEXT_INDEX_API"] == "documents", app
        assert env(run, app)["PINECONE_HOST"] == upstream["data"]["pineconeIndexHost"], app
    assert "PINECONE_NEXT_HOST" not in env(run, "pelican")


def test_without_a_next_index_no_app_gets_the_variable(compute_run):
    for app in ("emu", "frontend", "operator", "pelican"):
        assert "PINECONE_NEXT_HOST" not in env(compute_run, app)


def test_a_pinned_gpu_ami_is_used_without_asking_ssm(upstream):
    from conftest import CERT
    from infra.gpu import gpu_ami_warning

    run = run_layer("compute", {"emuGpu": True, "certificateArn": CERT, "emuMaxTasks": 2,
                                "gpuAmiId": "ami-0123456789abcdef0"}, stack="pinned", stack_outputs=upstream)
    assert run.one("aws:ec2/launchTemplate:LaunchTemplate").inputs["imageId"] == "ami-0123456789abcdef0"
    assert not [t for t, _ in run.calls if t == "aws:ssm/getParameter:getParameter"]
    # Unpinned, the layer warns (and reads SSM, test above); a pinned value must be an AMI id.
    assert "gpuAmiId is not set" in gpu_ami_warning("", "/aws/service/x")
    assert gpu_ami_warning("ami-0123456789abcdef0", "/aws/service/x") is None
    with pytest.raises(ValueError, match="is not an AMI id"):
        gpu_ami_warning("ubuntu-22.04", "/aws/service/x")


def test_a_prod_gpu_stack_refuses_a_floating_ami(upstream):
    from conftest import CERT

    with pytest.raises(Exception, match="tier prod runs a pinned GPU AMI: set gpuAmiId"):
        run_layer("compute", {"emuGpu": True, "certificateArn": CERT, "emuMaxTasks": 2, "tier": "prod"},
                  stack="prodfloating", stack_outputs=upstream)
    pinned = {"emuGpu": True, "certificateArn": CERT, "emuMaxTasks": 2, "tier": "prod"}
    old = run_layer("compute", {**pinned, "gpuAmiId": "ami-0123456789abcdef0"}, stack="prodpinned",
                    stack_outputs=upstream)
    new = run_layer("compute", {**pinned, "gpuAmiId": "ami-0fedcba9876543210"}, stack="prodpinned",
                    stack_outputs=upstream)
    template = "aws:ec2/launchTemplate:LaunchTemplate"
    assert old.one(template).inputs["imageId"] == "ami-0123456789abcdef0"
    assert new.one(template).inputs["imageId"] == "ami-0fedcba9876543210"
    # A new AMI is a new launch template version and nothing more: the group is unchanged and
    # starts no refresh itself, so running hosts change only in the instance refresh an
    # operator starts (docs/deploy.md, "GPU AMI").
    group = "aws:autoscaling/group:Group"
    assert old.one(group).inputs == new.one(group).inputs
    assert "instanceRefresh" not in new.one(group).inputs
    assert new.one(group).inputs["launchTemplate"]["version"] == "$Latest"


# --- ALB access logs ---------------------------------------------------------------------

def test_alb_access_logs_go_to_a_private_bucket_that_expires_them(compute_run):
    bucket = compute_run.one("aws:s3/bucket:Bucket")
    lb = compute_run.one("aws:lb/loadBalancer:LoadBalancer").inputs
    assert lb["accessLogs"] == {"bucket": bucket.outputs["bucket"], "prefix": "alb", "enabled": True}
    assert bucket.inputs["forceDestroy"] is False
    lifecycle = compute_run.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs
    (rule,) = lifecycle["rules"]
    assert rule["status"] == "Enabled" and rule["expiration"] == {"days": 90}
    assert rule["filter"] == {"prefix": "alb/"}
    block = compute_run.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    sse = compute_run.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    assert sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    policy = json.loads(compute_run.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    writers = {s["Sid"]: s for s in policy["Statement"] if s["Effect"] == "Allow"}
    logs = f"{bucket.outputs['arn']}/alb/AWSLogs/123456789012/*"
    assert {s["Resource"] for s in writers.values()} == {logs}
    assert {json.dumps(s["Principal"]) for s in writers.values()} == {
        json.dumps({"AWS": "arn:aws:iam::127311923021:root"}),
        json.dumps({"Service": "logdelivery.elasticloadbalancing.amazonaws.com"})}
    assert all(s["Action"] == "s3:PutObject" for s in writers.values())
    # The ALB checks its write permission when logging is turned on: the policy comes first.
    opts = compute_run.opts("aws:lb/loadBalancer:LoadBalancer", compute_run.one(
        "aws:lb/loadBalancer:LoadBalancer").name)
    assert any(getattr(d, "_name", None) == compute_run.one("aws:s3/bucketPolicy:BucketPolicy").name
               for d in opts.depends_on)


def test_alb_access_logs_can_be_turned_off(upstream):
    from conftest import CERT

    run = run_layer("compute", {"certificateArn": CERT, "albAccessLogDays": 0}, stack="nologs",
                    stack_outputs=upstream)
    assert run.of_type("aws:s3/bucket:Bucket") == []
    assert "accessLogs" not in run.one("aws:lb/loadBalancer:LoadBalancer").inputs
