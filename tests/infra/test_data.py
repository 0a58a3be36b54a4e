import json

import pytest

from harness import ALARM, DATA_SECRETS, DB, INDEX, run_layer


def test_database_is_private_encrypted_and_managed(data_run):
    db = data_run.one(DB)
    i = db.inputs
    assert i["engine"] == "postgres" and i["engineVersion"] == "17"
    assert i["publiclyAccessible"] is False
    assert i["storageEncrypted"] is True
    assert i["manageMasterUserPassword"] is True
    assert "password" not in i
    assert i["backupRetentionPeriod"] == 7
    assert i["port"] == 5432


def test_database_lives_in_private_subnets_behind_its_own_group(data_run, network_run):
    db = data_run.one(DB)
    subnet_group = data_run.one("aws:rds/subnetGroup:SubnetGroup")
    assert subnet_group.inputs["subnetIds"] == network_run.exports["privateSubnetIds"]
    assert db.inputs["dbSubnetGroupName"] == subnet_group.outputs["name"]
    sg = data_run.one("aws:ec2/securityGroup:SecurityGroup")
    assert sg.inputs["vpcId"] == network_run.exports["vpcId"]
    assert db.inputs["vpcSecurityGroupIds"] == [f"{sg.name}-id"]
    # No inline rules, no rules in this layer: compute adds ingress per service.
    assert "ingress" not in sg.inputs
    assert data_run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") == []


def test_parameter_group_forces_tls(data_run):
    pg = data_run.one("aws:rds/parameterGroup:ParameterGroup")
    assert pg.inputs["family"] == "postgres17"
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in pg.inputs["parameters"]
    assert data_run.one(DB).inputs["parameterGroupName"] == pg.outputs["name"]


def test_dev_and_prod_switches(data_run, data_prod_run):
    dev, prod = data_run.one(DB).inputs, data_prod_run.one(DB).inputs
    # Pulumi.yaml defaults are safe: deletion protection on, final snapshot taken.
    assert dev["multiAz"] is False and dev["deletionProtection"] is True
    assert dev["skipFinalSnapshot"] is False and dev["finalSnapshotIdentifier"]
    assert prod["multiAz"] is True and prod["deletionProtection"] is True
    assert prod["backupRetentionPeriod"] == 14
    assert sorted(data_prod_run.stack_refs) == ["acme/messaging/prod", "acme/network/prod"]
    assert sorted(data_run.stack_refs) == ["acme/messaging/dev", "acme/network/dev"]


def test_pinecone_index_serverless_from_config(data_run, data_prod_run):
    idx = data_run.one("pinecone:index/index:Index")
    assert idx.inputs["name"] == "ps-dev-products"
    assert idx.inputs["dimension"] == 384 and idx.inputs["metric"] == "dotproduct"
    assert idx.inputs["vectorType"] == "dense"
    assert idx.inputs["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    # Pinecone's deletion protection is on unless a stack turns it off.
    assert idx.inputs["deletionProtection"] == "enabled"
    assert data_prod_run.one("pinecone:index/index:Index").inputs["deletionProtection"] == "enabled"
    provider = data_run.one("pulumi:providers:pinecone")
    assert provider.inputs["apiKey"] == "pcsk-test-key" and "apiKey" in provider.secret_paths


def test_secrets_hold_the_pulumi_secrets_as_secrets(data_run):
    versions = {v.name: v for v in data_run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    pinecone = next(v for n, v in versions.items() if "pinecone-emu" in n)
    editor = next(v for n, v in versions.items() if "editor" in n)
    assert pinecone.inputs["secretString"] == "pcsk-emu-key"
    assert json.loads(editor.inputs["secretString"]) == {"username": "editor", "password": "editor-pass"}
    assert "secretString" in pinecone.secret_paths and "secretString" in editor.secret_paths


def test_each_app_role_has_a_generated_password_in_a_secret_that_keeps_it(data_run):
    from productsearch.roles import FRONTEND_ROLE, PELICAN_ROLE

    e = data_run.exports
    generated = [args for token, args in data_run.calls
                 if token == "aws:secretsmanager/getRandomPassword:getRandomPassword"]
    assert len(generated) == 2
    assert all(a["passwordLength"] >= 32 and a["excludePunctuation"] for a in generated)
    passwords = set()
    for app, role in (("pelican", PELICAN_ROLE), ("frontend", FRONTEND_ROLE)):
        secret = data_run.one("aws:secretsmanager/secret:Secret", f"-{app}-db-credentials")
        assert e[f"{app}DbSecretArn"] == secret.outputs["arn"] != e["dbSecretArn"]
        version = data_run.one("aws:secretsmanager/secretVersion:SecretVersion", f"-{app}-db-credentials")
        value = json.loads(version.inputs["secretString"])
        # The username is the role grant-roles manages for the app; it refuses any other.
        assert value["username"] == role and value["password"].startswith("mock-random-password-")
        assert "secretString" in version.secret_paths
        passwords.add(value["password"])
        # A new random value on every run must not replace the password the role was given.
        options = data_run.opts("aws:secretsmanager/secretVersion:SecretVersion", version.name)
        assert options.ignore_changes == ["secretString"]
    assert len(passwords) == 2
    editor = data_run.one("aws:secretsmanager/secretVersion:SecretVersion", "-editor-credentials")
    assert not data_run.opts("aws:secretsmanager/secretVersion:SecretVersion", editor.name).ignore_changes


def test_exports(data_run):
    e = data_run.exports
    assert set(e) == {"dbAddress", "dbPort", "dbName", "dbSecretArn", "dbSecurityGroupId",
                      "dbIdentifier", "pineconeIndexName", "pineconeIndexHost", "pineconeIndexApi", "pineconeDimension", "pineconeFrontendKeySecretArn",
                      "pineconeEmuKeySecretArn", "pineconeOperatorKeySecretArn", "pineconeKeyRoles",
                      "editorCredentialsSecretArn", "pelicanDbSecretArn", "frontendDbSecretArn"}
    assert e["dbSecretArn"].startswith("arn:aws:secretsmanager:") and "rds!db" in e["dbSecretArn"]
    assert e["dbPort"] == 5432 and e["dbName"] == "products"
    assert e["pineconeIndexHost"].endswith(".pinecone.io")


def test_missing_pinecone_key_fails_loudly(data_upstream):
    with pytest.raises(Exception, match="pineconeApiKey"):
        run_layer("data", secrets={k: v for k, v in DATA_SECRETS.items() if k != "pineconeApiKey"}, stack="nokey",
                  stack_outputs=data_upstream)


def test_short_editor_password_is_refused(data_upstream):
    with pytest.raises(Exception, match="editorPassword must be at least 8 characters"):
        run_layer("data", secrets={**DATA_SECRETS, "editorPassword": "short"}, stack="shortpw",
                  stack_outputs=data_upstream)


def test_missing_upstream_output_fails_loudly(messaging_run):
    with pytest.raises(Exception, match="privateSubnetIds|vpcId"):
        run_layer("data", secrets=DATA_SECRETS, stack="noup",
                  stack_outputs={"network": {}, "messaging": messaging_run.exports})


# --- the index's metric and a migration's next index (docs/index-migration.md) ---------


def test_the_index_is_dotproduct_by_default_and_alone(data_run):
    (idx,) = data_run.of_type(INDEX)
    assert idx.inputs["metric"] == "dotproduct"
    assert not {"pineconeNextIndexName", "pineconeNextIndexHost"} & set(data_run.exports)
    # Named after its Pinecone name, not its role: a migration only ever creates the next
    # index and deletes the old one (docs/index-migration.md).
    assert data_run.one("productsearch:data:VectorIndex").name == "ps-dev-vectors-ps-dev-products"


SECRETS = DATA_SECRETS


def data_with(data_upstream, config, stack="migrating"):
    return run_layer("data", config, stack=stack, secrets=SECRETS, stack_outputs=data_upstream)


def indexes_of(run):
    return {r.inputs["name"]: r for r in run.of_type(INDEX)}


def test_an_existing_index_keeps_its_metric(data_run):
    # Pinecone cannot change a metric: a changed input would replace the index and lose
    # its vectors, so it applies only when an index is created.
    idx = data_run.one(INDEX)
    assert data_run.opts(INDEX, idx.name).ignore_changes == ["metric"]


@pytest.fixture(scope="module")
def migrating_run(data_upstream):
    return data_with(data_upstream, {"pineconeIndexName": "ps-dev-products",
                                   "pineconeNextIndexName": "ps-dev-products-hybrid",
                                   "pineconeDeletionProtection": True})


def test_a_configured_next_index_is_a_dotproduct_twin_exported_beside_the_primary(migrating_run):
    indexes = indexes_of(migrating_run)
    assert set(indexes) == {"ps-dev-products", "ps-dev-products-hybrid"}
    primary, nxt = indexes["ps-dev-products"].inputs, indexes["ps-dev-products-hybrid"].inputs
    assert nxt["metric"] == "dotproduct"
    for key in ("dimension", "spec", "deletionProtection", "vectorType"):
        assert primary[key] == nxt[key], key
    assert nxt["deletionProtection"] == "enabled"
    e = migrating_run.exports
    assert e["pineconeIndexName"] == "ps-dev-products" and e["pineconeNextIndexName"] == "ps-dev-products-hybrid"
    assert e["pineconeIndexHost"].startswith("ps-dev-products-x1y2.")
    assert e["pineconeNextIndexHost"].startswith("ps-dev-products-hybrid-x1y2.")
    # Each with its own provider holding the key as a secret.
    providers = migrating_run.of_type("pulumi:providers:pinecone")
    assert len(providers) == 2 and all("apiKey" in p.secret_paths for p in providers)
    assert {c.name for c in migrating_run.of_type("productsearch:data:VectorIndex")} == {
        "ps-migrating-vectors-ps-dev-products", "ps-migrating-vectors-ps-dev-products-hybrid"}


def test_retiring_keeps_the_next_index_and_deletes_the_old_one_only_at_the_end(migrating_run, data_upstream):
    before = indexes_of(migrating_run)
    # Step 1: the next index becomes the primary; the old one stays, unexported and unprotected.
    step1 = data_with(data_upstream, {"pineconeIndexName": "ps-dev-products-hybrid",
                                    "pineconeRetiringIndexName": "ps-dev-products",
                                    "pineconeDeletionProtection": True})
    after = indexes_of(step1)
    assert set(after) == set(before)
    # The same logical resources: nothing is replaced. The new primary's inputs change in
    # nothing but the ignored metric; the old index only loses its deletion protection.
    new, old = after["ps-dev-products-hybrid"], after["ps-dev-products"]
    assert new.name == before["ps-dev-products-hybrid"].name and old.name == before["ps-dev-products"].name
    assert {k: v for k, v in new.inputs.items() if k != "metric"} == \
        {k: v for k, v in before["ps-dev-products-hybrid"].inputs.items() if k != "metric"}
    assert old.inputs["deletionProtection"] == "disabled"
    assert step1.exports["pineconeIndexHost"] == migrating_run.exports["pineconeNextIndexHost"]
    assert not {"pineconeNextIndexHost", "pineconeNextIndexName"} & set(step1.exports)
    assert step1.opts(INDEX, new.name).ignore_changes == ["metric"]
    # Step 2 (after compute is redeployed): only the new index is left in the program.
    step2 = data_with(data_upstream, {"pineconeIndexName": "ps-dev-products-hybrid", "pineconeDeletionProtection": True})
    assert set(indexes_of(step2)) == {"ps-dev-products-hybrid"}
    assert indexes_of(step2)["ps-dev-products-hybrid"].name == new.name


@pytest.mark.parametrize("config", [
    {"pineconeNextIndexName": "same-products", "pineconeIndexName": "same-products"},
    {"pineconeRetiringIndexName": "same-products", "pineconeIndexName": "same-products"},
    {"pineconeRetiringIndexName": "x-products", "pineconeNextIndexName": "x-products"},
])
def test_two_roles_for_one_index_are_refused(data_upstream, config):
    with pytest.raises(Exception, match="must name different indexes"):
        data_with(data_upstream, config, stack="samename")


def test_an_unknown_metric_is_refused(data_upstream):
    with pytest.raises(Exception, match="pineconeMetric must be one of"):
        data_with(data_upstream, {"pineconeMetric": "manhattan"}, stack="badmetric")


# --- protected stateful resources (docs/deploy.md, "Protected resources") ---------------

STATEFUL = (DB, INDEX, "aws:secretsmanager/secret:Secret")


def test_stateful_resources_are_protected_by_default(data_run):
    # Pulumi refuses to delete or replace a protected resource: a renamed index or
    # identifier fails at preview instead of dropping the data.
    protected = [r for r in data_run.resources if r.typ in STATEFUL]
    assert len(protected) == 1 + 1 + 6  # the database, the index, six secrets (three Pinecone keys)
    for r in protected:
        assert data_run.opts(r.typ, r.name).protect is True, r
    # What only derives from them is not protected: it can be replaced freely.
    for typ in ("aws:rds/parameterGroup:ParameterGroup", "aws:secretsmanager/secretVersion:SecretVersion",
                "pulumi:providers:pinecone"):
        for r in data_run.of_type(typ):
            assert not data_run.opts(r.typ, r.name).protect, r


def test_protection_is_lifted_by_one_config_key(data_upstream):
    run = data_with(data_upstream, {"protectStatefulResources": False}, stack="unprotected")
    stateful = [r for r in run.resources if r.typ in STATEFUL]
    assert stateful and all(run.opts(r.typ, r.name).protect is False for r in stateful)


def test_a_renamed_index_is_a_new_protected_resource_not_an_in_place_rename(data_run, data_upstream):
    # The index's logical name follows its Pinecone name: a new pineconeIndexName is a new
    # resource, and the old, protected one cannot be deleted, so `pulumi up` refuses.
    renamed = data_with(data_upstream, {"pineconeIndexName": "ps-dev-renamed"}, stack="dev")
    (old,) = data_run.of_type(INDEX)
    (new,) = renamed.of_type(INDEX)
    assert old.name != new.name
    assert data_run.opts(INDEX, old.name).protect is True


def test_the_retiring_index_is_unprotected_so_its_delete_goes_through(data_upstream):
    run = data_with(data_upstream, {"pineconeIndexName": "ps-dev-products-hybrid",
                                  "pineconeRetiringIndexName": "ps-dev-products"})
    indexes = indexes_of(run)
    assert run.opts(INDEX, indexes["ps-dev-products-hybrid"].name).protect is True
    assert run.opts(INDEX, indexes["ps-dev-products"].name).protect is False
    assert indexes["ps-dev-products"].inputs["deletionProtection"] == "disabled"


def test_instance_changes_wait_for_the_maintenance_window_unless_asked(data_run, data_upstream):
    db = data_run.one(DB).inputs
    assert db["applyImmediately"] is False and db["maintenanceWindow"]
    urgent = data_with(data_upstream, {"dbApplyImmediately": True}, stack="urgent")
    assert urgent.one(DB).inputs["applyImmediately"] is True


# --- the database is watched (alarms to messaging's topic, Performance Insights) ----------


def db_alarms(run):
    return {a.inputs["metricName"]: a.inputs for a in run.of_type(ALARM) if a.inputs["namespace"] == "AWS/RDS"}


def test_database_alarms_reach_the_alert_topic(data_run, messaging_run):
    alarms = db_alarms(data_run)
    # db.t4g.micro (the default) is burstable: its CPU credits are watched too.
    assert set(alarms) == {"FreeStorageSpace", "FreeableMemory", "DatabaseConnections", "CPUCreditBalance"}
    topic = messaging_run.exports["topicArn"]
    for metric, a in alarms.items():
        assert a["alarmActions"] == [topic] and a["okActions"] == [topic], metric
        assert a["dimensions"] == {"DBInstanceIdentifier": "ps-dev-db"}, metric
    assert alarms["FreeStorageSpace"]["threshold"] == 2 * 1024 ** 3
    assert alarms["FreeStorageSpace"]["comparisonOperator"] == "LessThanThreshold"
    assert alarms["FreeableMemory"]["threshold"] == 100 * 1024 ** 2
    assert alarms["DatabaseConnections"]["comparisonOperator"] == "GreaterThanThreshold"
    assert alarms["DatabaseConnections"]["threshold"] == 64
    assert alarms["CPUCreditBalance"]["threshold"] == 20


def test_a_fixed_performance_class_has_no_credit_alarm_and_gets_performance_insights(data_run, data_upstream):
    # The smallest burstable classes have no Performance Insights by default.
    micro = data_run.one(DB).inputs
    assert micro["performanceInsightsEnabled"] is False and "performanceInsightsRetentionPeriod" not in micro
    big = data_with(data_upstream, {"dbInstanceClass": "db.m7g.large", "dbConnectionsAlarmCount": 500},
                    stack="big")
    assert set(db_alarms(big)) == {"FreeStorageSpace", "FreeableMemory", "DatabaseConnections"}
    assert db_alarms(big)["DatabaseConnections"]["threshold"] == 500
    inputs = big.one(DB).inputs
    assert inputs["performanceInsightsEnabled"] is True and inputs["performanceInsightsRetentionPeriod"] == 7
    off = data_with(data_upstream, {"dbInstanceClass": "db.m7g.large", "dbPerformanceInsights": "off"}, stack="pioff")
    assert off.one(DB).inputs["performanceInsightsEnabled"] is False
    on = data_with(data_upstream, {"dbPerformanceInsights": "on"}, stack="pion")
    assert on.one(DB).inputs["performanceInsightsEnabled"] is True


@pytest.mark.parametrize("config, message", [
    ({"dbPerformanceInsights": "sometimes"}, "dbPerformanceInsights must be one of"),
    ({"dbConnectionsAlarmCount": 0}, "dbConnectionsAlarmCount must be positive"),
])
def test_bad_database_monitoring_settings_are_refused(data_upstream, config, message):
    with pytest.raises(Exception, match=message):
        data_with(data_upstream, config, stack="badmonitoring")


def test_data_needs_the_alert_topic(network_run):
    with pytest.raises(Exception, match="topicArn"):
        run_layer("data", secrets=SECRETS, stack="nomessaging", stack_outputs={"network": network_run.exports})
