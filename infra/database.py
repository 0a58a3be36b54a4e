"""PostgreSQL on RDS: private, encrypted, TLS-only, password managed by RDS."""
from __future__ import annotations

import datetime
from typing import Sequence

import pulumi
import pulumi_aws as aws

from infra.layer import component_type

POSTGRES_PORT = 5432
LOG_EXPORTS = ("postgresql",)


def final_snapshot_name(base: str, now: datetime.datetime | None = None) -> str:
    """``<base>-final-<UTC timestamp>``: a fresh name for each database instance's lifetime.

    A fixed name collides with the snapshot the previous destroy left behind, and the second
    destroy of a stack fails.  The instance keeps the name it was created with (ignore_changes),
    so previews do not churn.
    """
    stamp = (now or datetime.datetime.now(datetime.timezone.utc)).strftime("%Y%m%d%H%M%S")
    return f"{base}-final-{stamp}"


# Classes without Performance Insights (AWS docs: "Amazon RDS DB engine, Region, and instance
# class support for Database Insights" lists these for RDS for MySQL and MariaDB). They are
# left off by default for PostgreSQL too; dbPerformanceInsights "on" asks RDS anyway.
PERFORMANCE_INSIGHTS_UNSUPPORTED = frozenset(
    f"db.{family}.{size}" for family in ("t2", "t3", "t4g") for size in ("micro", "small"))
# The retention that costs nothing (AWS docs: "Configuring the Performance Insights
# retention period"): 7 days.
PERFORMANCE_INSIGHTS_RETENTION_DAYS = 7
PERFORMANCE_INSIGHTS_SETTINGS = ("auto", "on", "off")


def performance_insights_enabled(setting: str, instance_class: str) -> bool:
    """``auto``: on unless the class is in PERFORMANCE_INSIGHTS_UNSUPPORTED; ``on``/``off``: as said."""
    if setting not in PERFORMANCE_INSIGHTS_SETTINGS:
        raise ValueError(f"dbPerformanceInsights must be one of {PERFORMANCE_INSIGHTS_SETTINGS}, got {setting!r}")
    if setting == "auto":
        return instance_class not in PERFORMANCE_INSIGHTS_UNSUPPORTED
    return setting == "on"


def parameter_group_family(engine_version: str) -> str:
    """``"17"`` or ``"17.4"`` -> ``"postgres17"``."""
    return f"postgres{str(engine_version).split('.')[0]}"


class PostgresDatabase(pulumi.ComponentResource):
    """An RDS PostgreSQL instance with its own (ingress-free) security group.

    Ingress is added by the consumers (compute) for exactly the services that
    need the database, using ``security_group_id``.
    """

    def __init__(
        self,
        name: str,
        *,
        vpc_id: pulumi.Input[str],
        subnet_ids: pulumi.Input[Sequence[str]],
        engine_version: str,
        instance_class: str,
        allocated_storage: int,
        max_allocated_storage: int,
        db_name: str,
        master_username: str,
        identifier: str,
        log_retention_days: int,
        allow_major_version_upgrade: bool,
        multi_az: bool,
        deletion_protection: bool,
        backup_retention_days: int,
        skip_final_snapshot: bool,
        protect: bool = True,
        apply_immediately: bool = False,
        performance_insights: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """apply_immediately: False holds modifications that restart or slow the instance
        (class, storage, engine version) until the maintenance window; RDS applies them
        then (AWS docs: "Modifying an Amazon RDS DB instance", "Using the schedule
        modifications setting").
        performance_insights: Performance Insights with its free 7-day retention
        (see performance_insights_enabled).
        protect: Pulumi refuses to delete or replace the instance (``protect``), on top of
        RDS's own ``deletion_protection``: a change that would replace it (a new identifier,
        engine or storage encryption) then fails at preview instead of dropping the data."""
        token = component_type("data", "PostgresDatabase")
        super().__init__(token, name, None, opts)
        if backup_retention_days < 1:
            raise ValueError("automated backups must be on: dbBackupRetentionDays >= 1")
        child = pulumi.ResourceOptions(parent=self)

        self.security_group = aws.ec2.SecurityGroup(
            f"{name}-db",
            description="PostgreSQL; ingress rules are added per service by the compute layer",
            vpc_id=vpc_id,
            opts=child,
        )
        subnet_group = aws.rds.SubnetGroup(
            f"{name}-db",
            description="Private subnets for the database",
            subnet_ids=subnet_ids,
            opts=child,
        )
        self.parameter_group = aws.rds.ParameterGroup(
            f"{name}-db",
            family=parameter_group_family(engine_version),
            description="Force TLS for every client connection",
            parameters=[{"name": "rds.force_ssl", "value": "1", "apply_method": "immediate"}],
            opts=child,
        )
        # Created before the instance, so RDS exports into a group that expires its logs
        # (the group RDS would create itself keeps them forever).
        self.log_groups = [
            aws.cloudwatch.LogGroup(
                f"{name}-db-{log}",
                name=f"/aws/rds/instance/{identifier}/{log}",
                retention_in_days=log_retention_days,
                opts=child,
            )
            for log in LOG_EXPORTS
        ]
        self.instance = aws.rds.Instance(
            f"{name}-db",
            identifier=identifier,
            engine="postgres",
            engine_version=engine_version,
            instance_class=instance_class,
            allocated_storage=allocated_storage,
            max_allocated_storage=max_allocated_storage,
            storage_type="gp3",
            storage_encrypted=True,
            db_name=db_name,
            username=master_username,
            manage_master_user_password=True,
            port=POSTGRES_PORT,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=self.parameter_group.name,
            publicly_accessible=False,
            multi_az=multi_az,
            backup_retention_period=backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            copy_tags_to_snapshot=True,
            deletion_protection=deletion_protection,
            skip_final_snapshot=skip_final_snapshot,
            final_snapshot_identifier=None if skip_final_snapshot else final_snapshot_name(identifier),
            auto_minor_version_upgrade=True,
            # Major upgrades happen only when asked for (dbAllowMajorVersionUpgrade with a new
            # dbEngineVersion); the parameter group's family follows the version.
            allow_major_version_upgrade=allow_major_version_upgrade,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            ca_cert_identifier="rds-ca-rsa2048-g1",
            apply_immediately=apply_immediately,
            performance_insights_enabled=performance_insights,
            performance_insights_retention_period=(PERFORMANCE_INSIGHTS_RETENTION_DAYS
                                                   if performance_insights else None),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.log_groups, protect=protect,
                                        ignore_changes=["finalSnapshotIdentifier"]),
        )
        self.identifier = self.instance.identifier
        self.address = self.instance.address
        self.port = self.instance.port
        self.secret_arn = self.instance.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn)
        self.security_group_id = self.security_group.id
        self.register_outputs(
            {"address": self.address, "port": self.port, "secretArn": self.secret_arn}
        )
