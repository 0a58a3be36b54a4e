"""compute: images, ECS services, the public ALB, scaling and the dashboard."""
from pathlib import Path
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import iam
from infra.dashboard import dashboard_body
from infra.ecs import AppService, FargateSpot, LoadBalancing, ScalingSignal, container_insights_apps, ecs_cluster
from infra.gpu import GpuCapacity, check_gpu_capacity, gpu_ami_warning, gpu_instances_for
from infra.images import ServiceImage
from infra.layer import bootstrap, require_region
from infra.loadbalancer import AccessLogs, PublicLoadBalancer, rate_limit_acl, require_rate_limit, web_endpoint
from infra.monitoring import (CHANGES_WAITING_METRIC, METRICS_NAMESPACE, UNSHIPPED_AGE_METRIC, login_failures_alarm,
                               unshipped_changes_alarm, vacuum_alarms)
from infra.scaling import (PELICAN_CHANGES_PER_SECOND_PER_TASK, emu_changes_per_second, emu_changes_per_task_target,
                           pinecone_ceiling_warning, sized_max_tasks)
from infra.security import ServiceFirewall
from infra.task_definition import Gpu, OneOffTask, Runtime, TaskSpec, secret_ref

FRONTEND_PORT = 7860
HEALTH_PATH = "/healthz"
# The frontend's only writable directory under its read-only root filesystem.
FRONTEND_SCRATCH = "/scratch"

layer = bootstrap("compute", Path(__file__).parent)
cfg = layer.config
region = require_region()
prefix = layer.prefix
network = layer.upstream("network")
data = layer.upstream("data")
messaging = layer.upstream("messaging")
gpu_enabled = cfg.get("emuGpu")
# Refuse at preview what would only fail (or leak a password) after deploying.
endpoint = web_endpoint(cfg.get("certificateArn"), cfg.get("allowPlainHttp"), cfg.get("domainName"))
# How far emu and pelican scale: given, or sized for the peak rate from the per-task
# estimates in infra/scaling.py (docs/infrastructure.md, Scaling).
peak_changes = cfg.get("peakChangesPerSecond")
emu_rate = emu_changes_per_second(gpu_enabled)
emu_max_tasks = sized_max_tasks(cfg.get("emuMaxTasks"), peak_changes_per_second=peak_changes,
                                per_task_changes_per_second=emu_rate, min_tasks=cfg.get("emuMinTasks"))
# One pelican more than the fewest, at least: its scaling on the oldest change's age needs room.
pelican_max_tasks = sized_max_tasks(cfg.get("pelicanMaxTasks"), peak_changes_per_second=peak_changes,
                                    per_task_changes_per_second=PELICAN_CHANGES_PER_SECOND_PER_TASK,
                                    min_tasks=cfg.get("pelicanMinTasks"), floor_above_min=1)
emu_changes_per_task = emu_changes_per_task_target(cfg.get("emuChangesPerTask"), gpu=gpu_enabled)
if (warning := pinecone_ceiling_warning(emu_max_tasks, emu_rate)) is not None:
    pulumi.log.warn(warning)
gpu_max_instances = 0
if gpu_enabled:
    gpu_max_instances = gpu_instances_for(cfg.get("gpuInstanceType"), cfg.get("gpuMaxInstances"), emu_max_tasks)
    check_gpu_capacity(cfg.get("gpuInstanceType"), gpu_max_instances, emu_max_tasks)
    if (warning := gpu_ami_warning(cfg.get("gpuAmiId"), cfg.get("gpuAmiParameter"), layer.tier)) is not None:
        pulumi.log.warn(warning)

vpc_id = network.require_output("vpcId")
private_subnets = network.require_output("privateSubnetIds")
public_subnets = network.require_output("publicSubnetIds")
db_secret = data.require_output("dbSecretArn")
# Each app reads the index with a Pinecone API key of its own, in a secret of its own; only
# its execution role may read that secret (data layer; docs/deploy.md, "Pinecone keys").
pinecone_secrets = {app: data.require_output(f"pinecone{app.capitalize()}KeySecretArn")
                    for app in ("frontend", "emu", "operator")}
editor_secret = data.require_output("editorCredentialsSecretArn")
jobs_queue_arn = messaging.require_output("jobsQueueArn")
dlq_arn = messaging.require_output("dlqArn")

# --- Images (built from apps/, pushed with ECR's token, deployed by digest) ---
apps_dir = (Path(__file__).parent / cfg.get("appsDir")).resolve()
image_opts = dict(apps_dir=apps_dir, tag=layer.stack, platform=cfg.get("imagePlatform"),
                  force_delete=cfg.get("ecrForceDelete"), keep_images=cfg.get("ecrKeepImages"))
images = {
    "frontend": ServiceImage(f"{prefix}-frontend", app="frontend", **image_opts),
    "pelican": ServiceImage(f"{prefix}-pelican", app="pelican", **image_opts),
    "emu": ServiceImage(f"{prefix}-emu", app="emu",
                        build_args={"EMU_VARIANT": "cuda" if gpu_enabled else "cpu"}, **image_opts),
}

# --- Network guards ---
firewall = ServiceFirewall(
    prefix,
    vpc_id=vpc_id,
    db_security_group_id=data.require_output("dbSecurityGroupId"),
    listener_ports=endpoint.listener_ports,
    alb_ingress_cidr=cfg.get("albIngressCidr"),
    frontend_port=FRONTEND_PORT,
)
alb = PublicLoadBalancer(
    f"{prefix}-web",
    vpc_id=vpc_id,
    subnet_ids=public_subnets,
    security_group_id=firewall.alb.id,
    target_port=FRONTEND_PORT,
    health_check_path=HEALTH_PATH,
    endpoint=endpoint,
    hosted_zone_id=cfg.get("hostedZoneId"),
    idle_timeout_seconds=cfg.get("albIdleTimeoutSeconds"),
    access_logs=(AccessLogs(cfg.get("albAccessLogDays"), force_destroy=cfg.get("albAccessLogForceDestroy"))
                 if cfg.get("albAccessLogDays") else None),
)
require_rate_limit(endpoint, cfg.get("albIngressCidr"), cfg.get("wafRateLimit"))
if cfg.get("wafRateLimit"):
    rate_limit_acl(f"{prefix}-web-rate", load_balancer_arn=alb.lb.arn, limit_per_5_min=cfg.get("wafRateLimit"))

# --- Clusters: one per app, so each scales and is operated on its own ---
insights = container_insights_apps(cfg.get("containerInsights"), layer.tier)
clusters = {app: ecs_cluster(f"{prefix}-{app}", container_insights=app in insights)
            for app in ("frontend", "pelican", "emu")}

# --- The contract of environment variables and secrets ---
common_env = {"AWS_REGION": region, "LOG_LEVEL": cfg.get("logLevel")}
database_env = {
    "PGHOST": data.require_output("dbAddress"),
    "PGPORT": data.require_output("dbPort"),
    "PGDATABASE": data.require_output("dbName"),
    "PGSSLMODE": "verify-full",
}
# The apps read the database credentials from a secret themselves and re-read it when the
# database refuses them: a password can change under running tasks, while ECS would inject
# a secret only at task start. Pelican and the frontend connect as their own least-privilege
# roles, each with a secret of its own; only the operator task holds the master secret
# (it migrates and runs `pelican grant-roles`, which reads the app secrets to set the roles'
# passwords).
app_db_secrets = {app: data.require_output(f"{app}DbSecretArn") for app in ("pelican", "frontend")}


def database_access(secret_arn) -> tuple[dict, tuple]:
    """The database environment of a task connecting with `secret_arn`'s credentials, and
    the task-role grant to read that secret (and no other)."""
    return ({**database_env, "DATABASE_SECRET_ARN": secret_arn},
            ("DatabaseSecret", ["secretsmanager:GetSecretValue"], [secret_arn]))


pelican_db_env, pelican_db_grant = database_access(app_db_secrets["pelican"])
frontend_db_env, frontend_db_grant = database_access(app_db_secrets["frontend"])
operator_db_env, operator_db_grant = database_access(db_secret)
pinecone_env = {
    "PINECONE_HOST": data.require_output("pineconeIndexHost"),
    "PINECONE_INDEX": data.require_output("pineconeIndexName"),
    "PINECONE_NAMESPACE": cfg.get("pineconeNamespace"),
    # The index's dimension: the apps check their model against it at start.
    "EMBEDDING_DIMENSION": data.require_output("pineconeDimension"),
    # Only during an index migration (data's pineconeNextIndexName): emu writes both
    # indexes, the frontend serves whichever the serving_index row names, and the
    # operator task's `pelican migrate-index` builds and switches. Absent otherwise
    # (infra.ecs.env_list leaves out values that resolve to None).
    "PINECONE_NEXT_HOST": data.get_output("pineconeNextIndexHost"),
    # Which API each index speaks (vectors or documents); an older data stack exports none.
    "PINECONE_INDEX_API": data.get_output("pineconeIndexApi"),
    "PINECONE_NEXT_INDEX_API": data.get_output("pineconeNextIndexApi"),
}
jobs_queue_url = messaging.require_output("jobsQueueUrl")
dlq_url = messaging.require_output("dlqUrl")
topic_arn = messaging.require_output("topicArn")
# Pelican publishes its shipping lag here; the alarm below reads the same names.
metrics_env = {"CLOUDWATCH_NAMESPACE": METRICS_NAMESPACE, "DEPLOYMENT_NAME": prefix}

task_common: dict[str, Any] = dict(log_retention_days=cfg.get("logRetentionDays"), region=region)
service_common: dict[str, Any] = dict(subnet_ids=private_subnets,
                                      deploy_timeout_minutes=cfg.get("serviceDeployTimeoutMinutes"))

# Over plain HTTP the editor password would cross the internet in clear: without these
# secrets the frontend turns editing off.
editor_secrets = ({"EDITOR_USERNAME": secret_ref(editor_secret, "username"),
                   "EDITOR_PASSWORD": secret_ref(editor_secret, "password")}
                  if endpoint.editing_enabled else {})

# 0: a fixed frontendDesiredCount; otherwise scaled on CPU between it and this.
frontend_max_tasks = cfg.get("frontendMaxTasks")

frontend = AppService(
    f"{prefix}-frontend",
    TaskSpec(
        container="frontend", image=images["frontend"], cpu=cfg.get("frontendCpu"), memory=cfg.get("frontendMemory"),
        environment={**common_env, **frontend_db_env, **pinecone_env, "SQS_QUEUE_URL": jobs_queue_url,
                     "SQS_DLQ_URL": dlq_url, "FRONTEND_PORT": FRONTEND_PORT,
                     # One value for both ends: the app outlasts the ALB's idle timeout.
                     "LOAD_BALANCER_IDLE_TIMEOUT_SECONDS": cfg.get("albIdleTimeoutSeconds"),
                     # Only the ALB (inside the VPC) may say who the client is: the login throttle
                     # counts per client, and Gradio needs X-Forwarded-Proto for its https links.
                     "FRONTEND_TRUSTED_PROXIES": network.require_output("vpcCidrBlock"),
                     **{name: FRONTEND_SCRATCH for name in ("HOME", "TMPDIR", "GRADIO_TEMP_DIR")},
                     "HF_HOME": f"{FRONTEND_SCRATCH}/huggingface"},
        secrets={"PINECONE_API_KEY": secret_ref(pinecone_secrets["frontend"]), **editor_secrets},
        secret_arns=[pinecone_secrets["frontend"], *([editor_secret] if editor_secrets else [])],
        task_grants=[("QueueStatus", iam.SQS_READ_ATTRS, [jobs_queue_arn, dlq_arn]), frontend_db_grant],
        log_group_name=f"/ecs/{prefix}/frontend",
        port=FRONTEND_PORT,
        # The public-facing task cannot write its image; uploads and caches are bounded by the app
        # and land on storage of a set size.
        runtime=Runtime(read_only_root=True, scratch_path=FRONTEND_SCRATCH,
                        ephemeral_storage_gib=cfg.get("frontendEphemeralStorageGib")),
        **task_common,
    ),
    cluster=clusters["frontend"],
    security_group_ids=[firewall.frontend.id],
    desired_count=cfg.get("frontendDesiredCount"),
    autoscaled=frontend_max_tasks > 0,
    load_balancing=LoadBalancing(alb.target_group.arn, FRONTEND_PORT, depends_on=alb.listeners),
    **service_common,
)
# Queries embed on the frontend's CPU: more tasks when the average task is busy.
if frontend_max_tasks:
    frontend.autoscale(
        min_tasks=cfg.get("frontendDesiredCount"), max_tasks=frontend_max_tasks,
        signals=[ScalingSignal("cpu", "AWS/ECS", "CPUUtilization",
                               {"ClusterName": frontend.cluster.name, "ServiceName": frontend.service.name},
                               target=cfg.get("frontendCpuTarget"), statistic="Average", label="CPU %")],
    )

pelican = AppService(
    f"{prefix}-pelican",
    TaskSpec(
        container="pelican", image=images["pelican"], cpu=cfg.get("pelicanCpu"), memory=cfg.get("pelicanMemory"),
        environment={**common_env, **pelican_db_env, **metrics_env, "SQS_QUEUE_URL": jobs_queue_url},
        task_grants=[("JobsQueueSend", iam.SQS_SEND, [jobs_queue_arn]), iam.put_metrics_grant(METRICS_NAMESPACE),
                     pelican_db_grant],
        log_group_name=f"/ecs/{prefix}/pelican",
        **task_common,
    ),
    cluster=clusters["pelican"],
    security_group_ids=[firewall.pelican.id],
    desired_count=cfg.get("pelicanMinTasks"),
    autoscaled=True,
    **service_common,
)
# Pelican scales on how long the oldest change has waited to be shipped: more pelicans share
# the outbox safely (the claim is FOR UPDATE SKIP LOCKED, and emu's version check keeps the
# newest state whichever pelican ships first).
deployment_dimension = {"Deployment": prefix}
pelican.autoscale(
    min_tasks=cfg.get("pelicanMinTasks"), max_tasks=pelican_max_tasks,
    signals=[ScalingSignal("unshipped-age", METRICS_NAMESPACE, UNSHIPPED_AGE_METRIC, deployment_dimension,
                           target=cfg.get("pelicanUnshippedAgeTargetSeconds"))],
)
if endpoint.editing_enabled:
    login_failures_alarm(f"{prefix}-login-failures", log_group_name=frontend.log_group.name, deployment=prefix,
                         threshold=cfg.get("loginFailureAlarmCount"), topic_arn=topic_arn)
unshipped_changes_alarm(
    f"{prefix}-unshipped-changes",
    deployment=prefix,
    threshold_seconds=cfg.get("unshippedChangeAlarmSeconds"),
    topic_arn=topic_arn,
)
vacuum_alarms(
    f"{prefix}-database",
    deployment=prefix,
    oldest_transaction_seconds=cfg.get("oldestTransactionAlarmSeconds"),
    outbox_dead_tuples=cfg.get("outboxDeadTuplesAlarmCount"),
    topic_arn=topic_arn,
)

# One-off commands (migrate, grant-roles, reconcile [--repair], redrive, ...) with pelican's
# image, their own role and security group, as the database's administrator (the master
# secret); scripts/aws/operator.sh runs them.
operator = OneOffTask(
    f"{prefix}-operator",
    TaskSpec(
        container="operator", image=images["pelican"], cpu=cfg.get("operatorCpu"), memory=cfg.get("operatorMemory"),
        environment={**common_env, **operator_db_env, **pinecone_env, **metrics_env,
                     "SQS_QUEUE_URL": jobs_queue_url, "SQS_DLQ_URL": dlq_url,
                     # For grant-roles (productsearch.settings.AppRoleSettings).
                     **{f"{app.upper()}_DATABASE_SECRET_ARN": arn for app, arn in app_db_secrets.items()}},
        secrets={"PINECONE_API_KEY": secret_ref(pinecone_secrets["operator"])},
        secret_arns=[pinecone_secrets["operator"]],
        task_grants=[
            operator_db_grant,
            ("AppRoleSecrets", ["secretsmanager:GetSecretValue"], list(app_db_secrets.values())),
            ("JobsQueueSend", iam.SQS_SEND, [jobs_queue_arn]),
            ("DeadLetterRedrive", iam.SQS_CONSUME, [dlq_arn]),
            iam.put_metrics_grant(METRICS_NAMESPACE),
        ],
        log_group_name=f"/ecs/{prefix}/operator",
        **task_common,
    ),
)

gpu = None
if gpu_enabled:
    capacity = GpuCapacity(
        f"{prefix}-emu-gpu",
        cluster=clusters["emu"],
        subnet_ids=private_subnets,
        security_group_id=firewall.emu.id,
        instance_type=cfg.get("gpuInstanceType"),
        max_instances=gpu_max_instances,
        ami_parameter=cfg.get("gpuAmiParameter"),
        ami_id=cfg.get("gpuAmiId"),
        root_volume_gib=cfg.get("gpuRootVolumeGib"),
        tags=layer.tags,
    )
    gpu = Gpu(capacity.capacity_provider.name, count=1, depends_on=[capacity.attachment])
# On Fargate, emu's tasks beyond the on-demand base run on Spot: an interruption is a SIGTERM
# two minutes ahead, and emu hands its leased jobs back within its stop timeout.
spot = None
if not gpu_enabled and cfg.get("emuFargateSpot"):
    spot_providers = aws.ecs.ClusterCapacityProviders(
        f"{prefix}-emu-fargate",
        cluster_name=clusters["emu"].name,
        capacity_providers=["FARGATE", "FARGATE_SPOT"],
    )
    spot = FargateSpot(cfg.get("emuOnDemandTasks"), depends_on=[spot_providers])

emu = AppService(
    f"{prefix}-emu",
    TaskSpec(
        container="emu", image=images["emu"],
        cpu=cfg.get("emuGpuCpu") if gpu_enabled else cfg.get("emuCpu"),
        memory=cfg.get("emuGpuMemory") if gpu_enabled else cfg.get("emuMemory"),
        environment={**common_env, **pinecone_env, "SQS_QUEUE_URL": jobs_queue_url, "SQS_DLQ_URL": dlq_url,
                     "SNS_TOPIC_ARN": topic_arn,
                     "EMBEDDING_DEVICE": "cuda" if gpu_enabled else "cpu",
                     "EMBEDDING_BATCH_SIZE": cfg.get("embeddingBatchSize"),
                     # Emu leases jobs for as long as the queue was sized for, and extends the lease.
                     "EMU_VISIBILITY_TIMEOUT_SECONDS": messaging.require_output("jobsVisibilityTimeoutSeconds"),
                     # The same number as the container's stopTimeout: emu's drain fits inside it.
                     "EMU_STOP_TIMEOUT_SECONDS": cfg.get("emuStopTimeoutSeconds")},
        secrets={"PINECONE_API_KEY": secret_ref(pinecone_secrets["emu"])},
        secret_arns=[pinecone_secrets["emu"]],
        task_grants=[
            ("JobsQueueConsume", iam.SQS_CONSUME, [jobs_queue_arn]),
            ("DeadLetterSend", ["sqs:SendMessage"], [dlq_arn]),
            ("DeadLetterNotify", iam.SNS_PUBLISH, [topic_arn]),
            ("DeadLetterTopicKey", iam.KMS_FOR_ENCRYPTED_TOPIC, [messaging.require_output("topicKmsKeyArn")]),
        ],
        log_group_name=f"/ecs/{prefix}/emu",
        gpu=gpu,
        runtime=Runtime(stop_timeout_seconds=cfg.get("emuStopTimeoutSeconds")),
        **task_common,
    ),
    cluster=clusters["emu"],
    security_group_ids=[firewall.emu.id],
    desired_count=cfg.get("emuMinTasks"),
    autoscaled=True,
    spot=spot,
    **service_common,
)
# Emu scales on the changes waiting to be indexed per task, not on its CPU: a busy task
# is at full CPU whether one minute or one hour of work waits behind it.
emu.autoscale(
    min_tasks=cfg.get("emuMinTasks"), max_tasks=emu_max_tasks,
    signals=[ScalingSignal("changes-waiting", METRICS_NAMESPACE, CHANGES_WAITING_METRIC, deployment_dimension,
                           target=emu_changes_per_task, per_task=True, label="Changes waiting")],
)

services = {"frontend": frontend, "pelican": pelican, "emu": emu}
aws.cloudwatch.Dashboard(
    f"{prefix}-dashboard",
    dashboard_name=f"{prefix}-productsearch",
    dashboard_body=pulumi.Output.all(
        alb.lb.arn_suffix,
        alb.target_group.arn_suffix,
        messaging.require_output("jobsQueueName"),
        messaging.require_output("dlqName"),
        *[s.cluster.name for s in services.values()],
        *[s.service.name for s in services.values()],
    ).apply(lambda v: dashboard_body(
        region=region, alb_suffix=v[0], target_group_suffix=v[1], jobs_queue=v[2], dlq=v[3],
        services={app: (v[4 + i], v[7 + i]) for i, app in enumerate(services)},
        metrics_namespace=METRICS_NAMESPACE, deployment=prefix,
    )),
)

pulumi.export("serviceUrl", alb.url)
pulumi.export("albDnsName", alb.dns_name)
pulumi.export("clusterNames", {app: c.name for app, c in clusters.items()})
pulumi.export("serviceNames", {app: s.service.name for app, s in services.items()})
pulumi.export("repositoryUrls", {app: i.repository_url for app, i in images.items()})
pulumi.export("imageRefs", {app: i.image_ref for app, i in images.items()})
pulumi.export("logGroupNames", {app: s.log_group.name for app, s in services.items()})
# Used by scripts/aws/operator.sh (and run-migration.sh) to run one-off operator tasks.
pulumi.export("operatorTaskDefinitionArn", operator.task_definition.arn)
pulumi.export("operatorClusterName", clusters["pelican"].name)
pulumi.export("operatorSecurityGroupId", firewall.operator.id)
pulumi.export("operatorLogGroupName", operator.log_group.name)
pulumi.export("privateSubnetIds", private_subnets)
pulumi.export("emuCapacity", "gpu-ec2" if gpu_enabled else "fargate-spot" if spot else "fargate")
