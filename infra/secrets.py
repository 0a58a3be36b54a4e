"""Secrets Manager secrets whose values come from Pulumi secrets."""
from __future__ import annotations

import json
from typing import Mapping

import pulumi
import pulumi_aws as aws

from infra.layer import component_type


def require_min_length(key: str, minimum: int):
    """For ``Output.apply``: refuse a too-short secret without echoing it."""

    def check(value: str) -> str:
        if value is None or len(value) < minimum:
            raise ValueError(f"{key} must be at least {minimum} characters")
        return value

    return check


class StoredSecret(pulumi.ComponentResource):
    """A Secrets Manager secret holding either a plain string or a JSON object."""

    def __init__(
        self,
        name: str,
        *,
        description: str,
        value: pulumi.Input[str] | None = None,
        json_value: Mapping[str, pulumi.Input[str]] | None = None,
        recovery_window_days: int = 7,
        keep_first_value: bool = False,
        protect: bool = True,
        opts: pulumi.ResourceOptions | None = None,
    ):
        """keep_first_value: later changes to the value are ignored, for a value that is
        generated anew on every run (a random password) and must keep the one it was
        first given; the secret is then changed in Secrets Manager, not by Pulumi.
        protect: Pulumi refuses to delete or replace the secret (``protect``); its ARN is
        what the tasks read, and a generated password lives nowhere else."""
        token = component_type("data", "StoredSecret")
        super().__init__(token, name, None, opts)
        if (value is None) == (json_value is None):
            raise ValueError("give exactly one of value or json_value")
        child = pulumi.ResourceOptions(parent=self)
        self.secret = aws.secretsmanager.Secret(
            name,
            description=description,
            recovery_window_in_days=recovery_window_days,
            opts=pulumi.ResourceOptions(parent=self, protect=protect),
        )
        if json_value is not None:
            keys = list(json_value)
            secret_string = pulumi.Output.all(*json_value.values()).apply(
                lambda vals: json.dumps(dict(zip(keys, vals, strict=True)))
            )
        else:
            secret_string = value
        aws.secretsmanager.SecretVersion(
            name,
            secret_id=self.secret.id,
            secret_string=pulumi.Output.secret(secret_string),
            opts=pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(ignore_changes=["secretString"] if keep_first_value else None)),
        )
        self.arn = self.secret.arn
        self.register_outputs({"arn": self.arn})
