"""Per-app Pinecone keys, the cost defaults (Container Insights, Fargate Spot) and the
database alarms on pelican's vacuum metrics."""
import json
from types import SimpleNamespace

import pytest

from conftest import CERT
from harness import ALARM, API_KEY, CLUSTER, DATA_SECRETS, ROLE_POLICY, SECRET_VERSION, SERVICE, TASKDEF, run_layer

KEY_APPS = ("frontend", "emu", "operator")


def key_arn(data_run, app):
    return data_run.exports[f"pinecone{app.capitalize()}KeySecretArn"]


def task_secrets(run, app):
    (definition,) = json.loads(run.one(TASKDEF, f"-{app}").inputs["containerDefinitions"])
    return {s["name"]: s["valueFrom"] for s in definition["secrets"]}


def readers_of(run, arn):
    """The role policies (by resource name) that grant secretsmanager:GetSecretValue on `arn`."""
    found = set()
    for policy in run.of_type(ROLE_POLICY):
        for stmt in json.loads(policy.inputs["policy"])["Statement"]:
            if "secretsmanager:GetSecretValue" in stmt["Action"] and arn in stmt["Resource"]:
                found.add(policy.name)
    return found


# --- one Pinecone key per app ---------------------------------------------------------------

def test_each_task_definition_gets_its_own_pinecone_key(compute_run, data_run):
    arns = {app: key_arn(data_run, app) for app in KEY_APPS}
    assert len(set(arns.values())) == 3
    for app in KEY_APPS:
        assert task_secrets(compute_run, app)["PINECONE_API_KEY"] == arns[app], app
    assert "PINECONE_API_KEY" not in task_secrets(compute_run, "pelican")


@pytest.mark.parametrize("run_name", ["compute_run", "compute_gpu_run", "compute_plain_run"])
def test_each_role_can_read_only_its_own_pinecone_key(run_name, request, data_run):
    run = request.getfixturevalue(run_name)
    for app in KEY_APPS:
        # ECS injects the key at task start with the execution role; no task role and no
        # other app's role may read it.
        assert readers_of(run, key_arn(data_run, app)) == {f"ps-dev-{app}-execution"}, app


def test_the_frontend_key_is_the_read_only_one(data_run):
    roles = data_run.exports["pineconeKeyRoles"]
    assert roles == {"frontend": ["DataPlaneViewer"], "emu": ["DataPlaneEditor"], "operator": ["DataPlaneEditor"]}
    # Each secret holds its own app's key, as a secret; Pulumi's key is in none of them.
    versions = {v.name: v for v in data_run.of_type(SECRET_VERSION)}
    for app in KEY_APPS:
        version = versions[f"ps-dev-pinecone-{app}-api-key"]
        assert version.inputs["secretString"] == DATA_SECRETS[f"pinecone{app.capitalize()}ApiKey"]
        assert "secretString" in version.secret_paths
    assert all(v.inputs.get("secretString") != DATA_SECRETS["pineconeApiKey"] for v in versions.values())
    assert "ps-dev-pinecone-api-key" not in versions


@pytest.fixture(scope="module")
def managed_keys_run(data_upstream):
    secrets = {k: v for k, v in DATA_SECRETS.items() if not k.endswith("ApiKey") or k == "pineconeApiKey"}
    return run_layer("data", {"pineconeProjectId": "proj-123", "pineconeClientId": "sa-client"},
                     secrets={**secrets, "pineconeClientSecret": "sa-secret"}, stack="managedkeys",
                     stack_outputs=data_upstream)


def test_pulumi_creates_the_app_keys_with_their_roles_when_given_a_project(managed_keys_run):
    run = managed_keys_run
    keys = {k.inputs["name"]: k for k in run.of_type(API_KEY)}
    assert {name: k.inputs["roles"] for name, k in keys.items()} == {
        "ps-managedkeys-frontend": ["DataPlaneViewer"],
        "ps-managedkeys-emu": ["DataPlaneEditor"],
        "ps-managedkeys-operator": ["DataPlaneEditor"],
    }
    assert {k.inputs["projectId"] for k in keys.values()} == {"proj-123"}
    # The keys are made through a provider signed in as the service account, not with an API key.
    admin = run.one("pulumi:providers:pinecone", "-pinecone-admin")
    assert admin.inputs["clientId"] == "sa-client" and admin.inputs["clientSecret"] == "sa-secret"
    assert "apiKey" not in admin.inputs and "clientSecret" in admin.secret_paths
    versions = {v.name: v for v in run.of_type(SECRET_VERSION)}
    for app in KEY_APPS:
        version = versions[f"ps-managedkeys-pinecone-{app}-api-key"]
        assert version.inputs["secretString"] == f"pcsk-created-ps-managedkeys-{app}"
        assert "secretString" in version.secret_paths


@pytest.mark.parametrize("same", ["pineconeApiKey", "pineconeEmuApiKey"])
def test_a_key_shared_with_pulumi_or_another_app_is_refused(same, data_upstream):
    secrets = {**DATA_SECRETS, "pineconeFrontendApiKey": DATA_SECRETS[same]}
    pair = f"({same} and pineconeFrontendApiKey|pineconeFrontendApiKey and {same})"
    with pytest.raises(Exception, match=f"{pair} hold the same Pinecone key") as info:
        run_layer("data", secrets=secrets, stack=f"shared{same.lower()}", stack_outputs=data_upstream)
    assert DATA_SECRETS[same] not in str(info.value)


def test_a_missing_app_key_is_named(data_upstream):
    secrets = {k: v for k, v in DATA_SECRETS.items() if k != "pineconeEmuApiKey"}
    with pytest.raises(Exception, match="pineconeEmuApiKey"):
        run_layer("data", secrets=secrets, stack="noemukey", stack_outputs=data_upstream)


# --- Container Insights ----------------------------------------------------------------------

def insights(run):
    return {c.name.rsplit("-", 1)[1]: c.inputs["settings"] for c in run.of_type(CLUSTER)}


def test_container_insights_only_where_scaling_needs_it_outside_prod(compute_run):
    assert insights(compute_run) == {
        "frontend": [{"name": "containerInsights", "value": "disabled"}],
        "pelican": [{"name": "containerInsights", "value": "disabled"}],
        # emu's per-task scaling divides by Container Insights' DesiredTaskCount.
        "emu": [{"name": "containerInsights", "value": "enabled"}],
    }


@pytest.mark.parametrize("config, stack", [({"tier": "prod", "frontendDesiredCount": 2, "frontendMaxTasks": 4,
                                             "wafRateLimit": 1000}, "prodinsights"),
                                           ({"containerInsights": "all"}, "allinsights")])
def test_container_insights_on_every_cluster_in_prod_or_when_asked(config, stack, upstream):
    run = run_layer("compute", {"certificateArn": CERT, **config}, stack=stack, stack_outputs=upstream)
    assert {app: s[0]["value"] for app, s in insights(run).items()} == dict.fromkeys(
        ("frontend", "pelican", "emu"), "enabled")


def test_container_insights_setting_is_checked():
    from infra.ecs import container_insights_apps

    assert container_insights_apps("emu", "prod") == {"emu"}
    with pytest.raises(ValueError, match="containerInsights must be one of"):
        container_insights_apps("none", "dev")


# --- Fargate Spot for emu ------------------------------------------------------------------------

def test_emu_runs_beyond_its_base_on_fargate_spot(compute_run):
    emu = compute_run.one(SERVICE, "-emu").inputs
    assert "launchType" not in emu
    assert emu["capacityProviderStrategies"] == [
        {"capacityProvider": "FARGATE", "weight": 0, "base": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 1, "base": 0}]
    providers = compute_run.one("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders", "-emu-fargate").inputs
    assert providers["clusterName"] == compute_run.exports["clusterNames"]["emu"]
    assert providers["capacityProviders"] == ["FARGATE", "FARGATE_SPOT"]
    deps = compute_run.opts(SERVICE, "ps-dev-emu").depends_on
    assert "ps-dev-emu-fargate" in [d._name for d in deps]
    # Spot's notice is two minutes: emu's drain must fit in a stop timeout no longer than that.
    (definition,) = json.loads(compute_run.one(TASKDEF, "-emu").inputs["containerDefinitions"])
    assert definition["stopTimeout"] <= 120
    env = {e["name"]: e["value"] for e in definition["environment"]}
    assert env["EMU_STOP_TIMEOUT_SECONDS"] == str(definition["stopTimeout"])
    for app in ("frontend", "pelican"):
        assert compute_run.one(SERVICE, f"-{app}").inputs["launchType"] == "FARGATE"


def test_fargate_spot_can_be_turned_off(upstream):
    run = run_layer("compute", {"certificateArn": CERT, "emuFargateSpot": False}, stack="nospot",
                    stack_outputs=upstream)
    emu = run.one(SERVICE, "-emu").inputs
    assert emu["launchType"] == "FARGATE" and "capacityProviderStrategies" not in emu
    assert run.of_type("aws:ecs/clusterCapacityProviders:ClusterCapacityProviders") == []
    assert run.exports["emuCapacity"] == "fargate"


def test_spot_and_gpu_do_not_mix():
    from infra.ecs import AppService, FargateSpot
    from infra.task_definition import Gpu, TaskSpec

    image = SimpleNamespace(image_ref="i", repository_arn="r")
    spec = TaskSpec(container="x", image=image, cpu=1, memory=1, environment={}, task_grants=[],
                    log_group_name="l", log_retention_days=1, region="us-east-1", gpu=Gpu("cp"))
    with pytest.raises(ValueError, match="not Fargate Spot"):
        AppService("x", spec, cluster=None, subnet_ids=[], security_group_ids=[],  # type: ignore[arg-type]
                   desired_count=1, deploy_timeout_minutes=1, spot=FargateSpot(1))
    with pytest.raises(ValueError, match="emuOnDemandTasks"):
        FargateSpot(-1)


# --- alarms on pelican's database metrics -----------------------------------------------------

def test_vacuum_alarms_read_pelicans_metrics_and_page_the_topic(compute_run, messaging_run):
    from pelican.service import WAITING_METRIC  # the metric pelican already puts beside them

    waiting = compute_run.one("aws:appautoscaling/policy:Policy", "-emu-changes-waiting").inputs
    work = {m["id"]: m for m in waiting["targetTrackingScalingPolicyConfiguration"]
            ["customizedMetricSpecification"]["metrics"]}["work"]["metricStat"]["metric"]
    assert work["metricName"] == WAITING_METRIC
    expected = {"-oldest-transaction": ("OldestTransactionAgeSeconds", 1800),
                "-outbox-dead-tuples": ("OutboxDeadTuples", 1000000)}
    for suffix, (metric, threshold) in expected.items():
        alarm = compute_run.one(ALARM, f"ps-dev-database{suffix}").inputs
        assert (alarm["namespace"], alarm["metricName"]) == (work["namespace"], metric)
        assert alarm["dimensions"] == {d["name"]: d["value"] for d in work["dimensions"]}
        assert alarm["threshold"] == threshold and alarm["comparisonOperator"] == "GreaterThanThreshold"
        assert alarm["statistic"] == "Maximum"
        assert alarm["period"] * alarm["evaluationPeriods"] == 900
        assert alarm["alarmActions"] == [messaging_run.exports["topicArn"]]
        assert alarm["okActions"] == [messaging_run.exports["topicArn"]]
        # A silent pelican is the unshipped-changes alarm's to report.
        assert alarm["treatMissingData"] == "notBreaching"


def test_vacuum_alarm_thresholds_are_config(upstream):
    run = run_layer("compute", {"certificateArn": CERT, "oldestTransactionAlarmSeconds": 600,
                                "outboxDeadTuplesAlarmCount": 50000}, stack="vacuum", stack_outputs=upstream)
    assert run.one(ALARM, "-oldest-transaction").inputs["threshold"] == 600
    assert run.one(ALARM, "-outbox-dead-tuples").inputs["threshold"] == 50000
    with pytest.raises(Exception, match="outboxDeadTuplesAlarmCount must be positive"):
        run_layer("compute", {"certificateArn": CERT, "outboxDeadTuplesAlarmCount": 0}, stack="vacuumbad",
                  stack_outputs=upstream)
