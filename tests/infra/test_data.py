import json

import pytest

from harness import run_layer

DB = "aws:rds/instance:Instance"


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
    assert data_prod_run.stack_refs == ["acme/network/prod"]
    assert data_run.stack_refs == ["acme/network/dev"]


def test_pinecone_index_serverless_from_config(data_run, data_prod_run):
    idx = data_run.one("pinecone:index/index:Index")
    assert idx.inputs["name"] == "ss-dev-products"
    assert idx.inputs["dimension"] == 384 and idx.inputs["metric"] == "cosine"
    assert idx.inputs["vectorType"] == "dense"
    assert idx.inputs["spec"] == {"serverless": {"cloud": "aws", "region": "us-east-1"}}
    assert idx.inputs["deletionProtection"] == "disabled"
    assert data_prod_run.one("pinecone:index/index:Index").inputs["deletionProtection"] == "enabled"
    provider = data_run.one("pulumi:providers:pinecone")
    assert provider.inputs["apiKey"] == "pcsk-test-key" and "apiKey" in provider.secret_paths


def test_secrets_hold_the_pulumi_secrets_as_secrets(data_run):
    versions = {v.name: v for v in data_run.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    pinecone = next(v for n, v in versions.items() if "pinecone" in n)
    editor = next(v for n, v in versions.items() if "editor" in n)
    assert pinecone.inputs["secretString"] == "pcsk-test-key"
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
                      "dbIdentifier", "pineconeIndexName", "pineconeIndexHost", "pineconeDimension", "pineconeApiKeySecretArn",
                      "editorCredentialsSecretArn", "pelicanDbSecretArn", "frontendDbSecretArn"}
    assert e["dbSecretArn"].startswith("arn:aws:secretsmanager:") and "rds!db" in e["dbSecretArn"]
    assert e["dbPort"] == 5432 and e["dbName"] == "products"
    assert e["pineconeIndexHost"].endswith(".pinecone.io")


def test_missing_pinecone_key_fails_loudly(network_run):
    with pytest.raises(Exception, match="pineconeApiKey"):
        run_layer("data", secrets={"editorPassword": "long-enough"}, stack="nokey",
                  stack_outputs={"network": network_run.exports})


def test_short_editor_password_is_refused(network_run):
    with pytest.raises(Exception, match="editorPassword must be at least 8 characters"):
        run_layer("data", secrets={"pineconeApiKey": "k", "editorPassword": "short"}, stack="shortpw",
                  stack_outputs={"network": network_run.exports})


def test_missing_upstream_output_fails_loudly():
    with pytest.raises(Exception, match="privateSubnetIds|vpcId"):
        run_layer("data", secrets={"pineconeApiKey": "k", "editorPassword": "long-enough"}, stack="noup",
                  stack_outputs={"network": {}})
