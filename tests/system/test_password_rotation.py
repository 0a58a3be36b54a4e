"""A rotated database password does not stop the apps: pelican and the
frontend take their credentials from a Secrets Manager secret (DATABASE_SECRET_ARN,
moto's Secrets Manager on the local stack) and, when the database refuses them,
re-read the secret and reconnect, without a restart.

The test rotates a role of its own (a member of the owner role, so it has the same
rights), so the credentials every other test uses are never touched."""

from __future__ import annotations

import json
import secrets
import uuid

import boto3
import psycopg
import pytest
from psycopg import sql

from devstack.waiting import wait_until
from tests.e2e.frontend_stack import request

pytestmark = pytest.mark.stack


@pytest.fixture
def rotating_role(stack, parts):
    """A login role with its credentials in a secret; yields (role, secret ARN, first password)."""
    role = f"rotating_{uuid.uuid4().hex[:8]}"
    password = secrets.token_urlsafe(18)
    parts.conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    parts.conn.execute(sql.SQL("GRANT products TO {}").format(sql.Identifier(role)))
    sm = secrets_manager(stack)
    arn = sm.create_secret(Name=f"productsearch/{role}",
                           SecretString=json.dumps({"engine": "postgres", "username": role, "password": password}))["ARN"]
    yield role, arn, password
    for name in ("pelican", "frontend"):
        stack.stop(name, timeout=20)
    parts.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
    parts.conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def secrets_manager(stack):
    env = stack.env()
    return boto3.client("secretsmanager", region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"],
                        aws_access_key_id="local", aws_secret_access_key="local")


def log_text(stack, name: str) -> str:
    path = stack.log_path(name)
    return path.read_text(errors="replace") if path.exists() else ""


def shipped_ids(parts) -> list[int]:
    return [c["id"] for body in parts.drain_queue(parts.env["SQS_QUEUE_URL"], idle_rounds=1) for c in body["changes"]]


def test_apps_reconnect_with_the_rotated_password_from_the_secret(stack, parts, rotating_role):
    role, arn, old_password = rotating_role
    no_password_url = stack.database_url.replace("products:products-local@", "")
    assert "@" not in no_password_url
    env = {"DATABASE_URL": no_password_url, "DATABASE_SECRET_ARN": arn}
    pelican = stack.start_app("pelican", env, options={"poll_interval_seconds": 0.5})
    frontend = stack.start_app("frontend", env)
    front_url = stack.env()["FRONTEND_URL"]

    def product_answers(pid: int) -> bool:
        try:
            return request(f"{front_url}/api/products/{pid}", timeout=5).status == 200
        except OSError:
            return False  # still starting

    before = parts.insert("Before Rotation", "shipped with the first password")
    wait_until(lambda: parts.pending_changes() == 0, 60, what="pelican shipping with the secret's credentials")
    assert shipped_ids(parts) == [before]
    wait_until(lambda: product_answers(before), 120, interval=0.5, what="the frontend answering with the secret's credentials")
    users = {r["application_name"]: r["usename"] for r in parts.conn.execute(
        "SELECT application_name, usename FROM pg_stat_activity WHERE application_name IN ('pelican', 'frontend')")}
    assert users == {"pelican": role, "frontend": role}, "the apps must connect as the secret's user"

    # Rotate as Secrets Manager's rotation does: the database first, then the secret.
    new_password = secrets.token_urlsafe(18)
    parts.conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(new_password)))
    secrets_manager(stack).put_secret_value(
        SecretId=arn, SecretString=json.dumps({"engine": "postgres", "username": role, "password": new_password}))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(no_password_url, user=role, password=old_password, connect_timeout=5).close()
    # Existing sessions outlive a password change; cut them so the apps must log in again.
    cut = parts.conn.execute("SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE usename = %s",
                             (role,)).fetchone()["n"]
    assert cut >= 3  # pelican's two and the frontend pool's

    after = parts.insert("After Rotation", "shipped with the rotated password")
    wait_until(lambda: parts.pending_changes() == 0, 60, what="pelican shipping after the rotation")
    assert shipped_ids(parts) == [after]
    wait_until(lambda: product_answers(after), 60, interval=0.5, what="the frontend answering after the rotation")
    assert pelican.poll() is None and frontend.poll() is None, "no restart: both still the processes started above"

    for name in ("pelican", "frontend"):
        text = log_text(stack, name)
        assert "refused the credentials" in text, f"{name} did not re-read the secret:\n{text[-3000:]}"
        assert old_password not in text and new_password not in text, f"a password reached {name}'s log"
