"""data: the database, the vector index and the secrets the apps read."""
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.database import PostgresDatabase, performance_insights_enabled
from infra.document_index import DocumentIndex, product_schema
from infra.layer import bootstrap
from infra.monitoring import DatabaseAlarmArgs, database_alarms
from infra.pinecone_keys import APP_KEY_ROLES, given_app_keys, managed_app_keys
from infra.secrets import StoredSecret, require_min_length
from infra.vector_index import VectorIndex, default_index_name

layer = bootstrap("data", Path(__file__).parent)
cfg = layer.config
network = layer.upstream("network")
# The database's alarms go to messaging's alert topic: on a new stack, messaging is
# deployed before data (scripts/aws/layers.sh).
messaging = layer.upstream("messaging")
# Pulumi's `protect` on everything that holds data: the database, the indexes and the
# secrets. A rename or a replacing change then fails at preview, and so does a destroy,
# until protectStatefulResources is set false and applied (docs/deploy.md, "Protected resources").
protect = cfg.get("protectStatefulResources")

database = PostgresDatabase(
    layer.prefix,
    vpc_id=network.require_output("vpcId"),
    subnet_ids=network.require_output("privateSubnetIds"),
    engine_version=cfg.get("dbEngineVersion"),
    instance_class=cfg.get("dbInstanceClass"),
    allocated_storage=cfg.get("dbAllocatedStorage"),
    max_allocated_storage=cfg.get("dbMaxAllocatedStorage"),
    db_name=cfg.get("dbName"),
    master_username=cfg.get("dbMasterUsername"),
    identifier=cfg.get("dbIdentifier") or f"{layer.prefix}-db",
    log_retention_days=cfg.get("dbLogRetentionDays"),
    allow_major_version_upgrade=cfg.get("dbAllowMajorVersionUpgrade"),
    multi_az=cfg.get("dbMultiAz"),
    deletion_protection=cfg.get("dbDeletionProtection"),
    backup_retention_days=cfg.get("dbBackupRetentionDays"),
    skip_final_snapshot=cfg.get("dbSkipFinalSnapshot"),
    protect=protect,
    apply_immediately=cfg.get("dbApplyImmediately"),
    performance_insights=performance_insights_enabled(cfg.get("dbPerformanceInsights"), cfg.get("dbInstanceClass")),
)
database_alarms(
    layer.prefix,
    identifier=database.identifier,
    instance_class=cfg.get("dbInstanceClass"),
    thresholds=DatabaseAlarmArgs(
        free_storage_gib=cfg.get("dbFreeStorageAlarmGib"),
        freeable_memory_mib=cfg.get("dbFreeableMemoryAlarmMib"),
        connections=cfg.get("dbConnectionsAlarmCount"),
        cpu_credits=cfg.get("dbCpuCreditAlarmCount"),
    ),
    topic_arn=messaging.require_output("topicArn"),
)

pinecone_key = cfg.secret("pineconeApiKey")
index_name = cfg.get("pineconeIndexName") or default_index_name(layer.prefix)
next_index_name = cfg.get("pineconeNextIndexName")
retiring_index_name = cfg.get("pineconeRetiringIndexName")
named = [n for n in (index_name, next_index_name, retiring_index_name) if n]
if len(set(named)) != len(named):
    raise ValueError("pineconeIndexName, pineconeNextIndexName and pineconeRetiringIndexName must name "
                     f"different indexes, got {named}")
index_options = dict(
    dimension=cfg.get("pineconeDimension"),
    cloud=cfg.get("pineconeCloud"),
    region=cfg.get("pineconeRegion"),
    api_key=pinecone_key,
    tags=layer.tags,
    protect=protect,
)
# Each index's Pulumi name follows its Pinecone name, not its role, so moving to a new
# index (docs/index-migration.md) only ever creates the next index and deletes the old
# one: the same resource is the next index, then the primary.
index_api = cfg.get("pineconeIndexApi")
next_index_api = cfg.get("pineconeNextIndexApi") or index_api
for key, value in (("pineconeIndexApi", index_api), ("pineconeNextIndexApi", next_index_api)):
    if value not in ("vectors", "documents"):
        raise ValueError(f"{key} must be vectors or documents, got {value!r}")
if index_api == "documents":
    # The pinecone-pulumi provider cannot declare a schema: a dynamic provider does
    # (infra/document_index.py, docs/document-index.md).
    index = DocumentIndex(
        f"{layer.prefix}-documents-{index_name}",
        index_name=index_name,
        schema=product_schema(cfg.get("pineconeDimension"), cfg.get("pineconeMetric")),
        deletion_protection=cfg.get("pineconeDeletionProtection"),
        **{k: v for k, v in index_options.items() if k != "dimension"},
    )
else:
    index = VectorIndex(
        f"{layer.prefix}-vectors-{index_name}",
        index_name=index_name,
        metric=cfg.get("pineconeMetric"),
        deletion_protection=cfg.get("pineconeDeletionProtection"),
        **index_options,
    )
# The index `pelican migrate-index` builds beside the primary: a document index
# (pineconeNextIndexApi documents, the move to the Documents API), or a legacy one with
# dotproduct, the metric hybrid (dense + sparse) queries need.
next_index: DocumentIndex | VectorIndex | None = None
if next_index_name and next_index_api == "documents":
    next_index = DocumentIndex(
        f"{layer.prefix}-documents-{next_index_name}",
        index_name=next_index_name,
        schema=product_schema(cfg.get("pineconeDimension"), "dotproduct"),
        deletion_protection=cfg.get("pineconeDeletionProtection"),
        **{k: v for k, v in index_options.items() if k != "dimension"},
    )
elif next_index_name:
    next_index = VectorIndex(
        f"{layer.prefix}-vectors-{next_index_name}",
        index_name=next_index_name,
        metric="dotproduct",
        deletion_protection=cfg.get("pineconeDeletionProtection"),
        **index_options,
    )
# The old index after a switch, kept (not exported, so no app uses it) until compute
# has been redeployed without it; unsetting the key then deletes it. Its deletion
# protection (Pinecone's and Pulumi's) is lifted meanwhile, so that delete goes through.
if retiring_index_name:
    VectorIndex(
        f"{layer.prefix}-vectors-{retiring_index_name}",
        index_name=retiring_index_name,
        metric=cfg.get("pineconeMetric"),  # ignored: an existing index keeps its metric
        deletion_protection=False,
        # The policy pack lets a prod index go unprotected only while it is being retired.
        **{**index_options, "protect": False, "tags": {**layer.tags, "lifecycle": "retiring"}},
    )

# Each app's own Pinecone key in a secret of its own (infra/pinecone_keys.py has the roles);
# pineconeApiKey above stays Pulumi's, for the provider only.
project_id = cfg.get("pineconeProjectId")
if project_id:
    app_keys = managed_app_keys(layer.prefix, project_id=project_id, client_id=cfg.get("pineconeClientId"),
                                client_secret=cfg.secret("pineconeClientSecret"))
else:
    app_keys = given_app_keys(pinecone_key, {"frontend": cfg.secret("pineconeFrontendApiKey"),
                                             "emu": cfg.secret("pineconeEmuApiKey"),
                                             "operator": cfg.secret("pineconeOperatorApiKey")})
pinecone_secrets = {
    app: StoredSecret(
        f"{layer.prefix}-pinecone-{app}-api-key",
        description=f"Pinecone API key (plain string) for {app} alone, roles {', '.join(APP_KEY_ROLES[app])}",
        value=key,
        recovery_window_days=cfg.get("secretRecoveryWindowDays"),
        protect=protect,
    )
    for app, key in app_keys.items()
}
editor_password = cfg.secret("editorPassword").apply(require_min_length("editorPassword", 8))
editor_secret = StoredSecret(
    f"{layer.prefix}-editor-credentials",
    description="Frontend editor login: JSON with username and password",
    json_value={"username": cfg.get("editorUsername"), "password": editor_password},
    recovery_window_days=cfg.get("secretRecoveryWindowDays"),
    protect=protect,
)

# The apps' own database roles (apps/common/productsearch/roles.py; `pelican grant-roles`,
# run from the operator task, creates them and sets these passwords). Secrets Manager
# generates each password; it is generated anew on every run, so the secret keeps the
# first one (keep_first_value) and the role and its secret never drift apart.
APP_DB_ROLES = {"pelican": "productsearch_pelican", "frontend": "productsearch_frontend"}
app_db_secrets = {
    app: StoredSecret(
        f"{layer.prefix}-{app}-db-credentials",
        description=f"{app}'s database role: JSON with username and password (pelican grant-roles sets it)",
        json_value={"username": role, "password": aws.secretsmanager.get_random_password_output(
            # Letters and digits only: safe in a connection URL or a shell, and 40 of them
            # are ~238 bits.
            password_length=40, exclude_punctuation=True, include_space=False).random_password},
        keep_first_value=True,
        recovery_window_days=cfg.get("secretRecoveryWindowDays"),
        protect=protect,
    )
    for app, role in APP_DB_ROLES.items()
}

pulumi.export("dbAddress", database.address)
pulumi.export("dbPort", database.port)
pulumi.export("dbName", cfg.get("dbName"))
pulumi.export("dbSecretArn", database.secret_arn)
pulumi.export("dbSecurityGroupId", database.security_group_id)
pulumi.export("dbIdentifier", database.identifier)
pulumi.export("pineconeIndexName", index.name)
pulumi.export("pineconeIndexHost", index.host)
pulumi.export("pineconeIndexApi", index_api)
if next_index is not None:
    pulumi.export("pineconeNextIndexName", next_index.name)
    pulumi.export("pineconeNextIndexHost", next_index.host)
    pulumi.export("pineconeNextIndexApi", next_index_api)
pulumi.export("pineconeDimension", cfg.get("pineconeDimension"))
for app, stored in pinecone_secrets.items():
    pulumi.export(f"pinecone{app.capitalize()}KeySecretArn", stored.arn)
pulumi.export("pineconeKeyRoles", APP_KEY_ROLES)
pulumi.export("editorCredentialsSecretArn", editor_secret.arn)
pulumi.export("pelicanDbSecretArn", app_db_secrets["pelican"].arn)
pulumi.export("frontendDbSecretArn", app_db_secrets["frontend"].arn)
