"""The apps' least-privilege roles (`pelican grant-roles`, productsearch.roles) against
the real local Postgres, with their credentials in secrets in the local Secrets Manager.

The command runs as the stack's administrator (the initdb superuser standing in for the
RDS master user); the tests then connect as each role and check that the app's own
code paths work and that everything else is refused. The roles are cluster-wide, so
every test drops them again."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql
from psycopg_pool import ConnectionPool

from productsearch import db
from productsearch.roles import FRONTEND_ROLE, PELICAN_ROLE
from productsearch.settings import DEFAULT_TEXT_TEMPLATE

pytestmark = pytest.mark.stack

ADMIN_CREDENTIALS = "products:products-local@"


def drop_roles(conn) -> None:
    for role in (PELICAN_ROLE, FRONTEND_ROLE):
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            # DROP OWNED revokes the role's privileges in this database; it owns nothing.
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture
def role_secrets(stack, parts):
    """{role: [secret ARN, password]} for both app roles; drops the roles and secrets after."""
    drop_roles(parts.conn)  # left by an interrupted run
    sm = stack.aws_client("secretsmanager")
    made = {}
    for role in (PELICAN_ROLE, FRONTEND_ROLE):
        password = secrets.token_urlsafe(24)
        arn = sm.create_secret(Name=f"productsearch/test/{role}/{secrets.token_hex(4)}",
                               SecretString=json.dumps({"username": role, "password": password}))["ARN"]
        made[role] = [arn, password]
    yield made
    drop_roles(parts.conn)
    for arn, _ in made.values():
        sm.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)


def grant(stack, role_secrets, **overrides) -> subprocess.CompletedProcess:
    env = {"PELICAN_DATABASE_SECRET_ARN": role_secrets[PELICAN_ROLE][0],
           "FRONTEND_DATABASE_SECRET_ARN": role_secrets[FRONTEND_ROLE][0], **overrides}
    return subprocess.run([sys.executable, "-m", "pelican", "grant-roles"], env=stack.app_env(env),
                          capture_output=True, text=True, timeout=120)


def url_as(stack, role: str, password: str) -> str:
    assert ADMIN_CREDENTIALS in stack.database_url
    return stack.database_url.replace(ADMIN_CREDENTIALS, f"{role}:{password}@")


def refused(conn, statement: str, params=None) -> bool:
    try:
        conn.execute(statement, params)
    except errors.InsufficientPrivilege:
        return True
    return False


# Each statement as the named role must fail for lack of privilege (42501).
REFUSED_TO_BOTH = [
    "INSERT INTO product_changes (product_id, operation, version) VALUES (1, 'delete', 9223372036854775000)",
    "INSERT INTO products (name, sku, price) VALUES ('x', 'forged', 1)",
    "DELETE FROM products",
    "UPDATE products SET version = version + 1",
    "UPDATE products SET sku = sku || '-x'",
    "TRUNCATE products",
    "TRUNCATE product_changes",
    "DROP TABLE product_changes",
    "ALTER TABLE products ADD COLUMN sneaky text",
    "CREATE TABLE public.sneaky (id int)",
    "CREATE FUNCTION public.sneaky() RETURNS int LANGUAGE sql AS 'SELECT 1'",
    "SELECT * FROM schema_migrations",
    "SELECT * FROM backfill_progress",
    "SELECT * FROM product_price_quarantine",
    "UPDATE backfill_progress SET last_id = 0",
    "SELECT setval(pg_get_serial_sequence('product_changes', 'id'), 1)",
    # Only `pelican refit-lexical`, as the administrator, writes the keyword statistics.
    "UPDATE lexical_corpus SET documents = 0",
    "DELETE FROM lexical_terms",
    "INSERT INTO lexical_terms VALUES (1, 1)",
]
REFUSED_TO_PELICAN = ["UPDATE products SET name = name || '!'", "UPDATE products SET price = 0",
                      "SELECT * FROM lexical_terms"]
REFUSED_TO_FRONTEND = ["DELETE FROM product_changes", "SELECT id FROM product_changes FOR UPDATE",
                       "UPDATE products SET category = 'other'"]


def test_each_role_can_do_its_apps_work_and_nothing_else(stack, parts, role_secrets):
    from frontend.editing import EDITABLE, apply_edit, get_product
    from pelican.outbox import ship_batch
    from productsearch import change_log

    done = grant(stack, role_secrets)
    assert done.returncode == 0, done.stderr
    assert f"database roles granted: {PELICAN_ROLE}, {FRONTEND_ROLE}" in done.stdout
    for _, password in role_secrets.values():
        assert password not in done.stdout + done.stderr
    attributes = parts.conn.execute(
        "SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles "
        "WHERE rolname = ANY(%s) ORDER BY rolname", ([PELICAN_ROLE, FRONTEND_ROLE],)).fetchall()
    assert [(r["rolname"], r["rolcanlogin"], r["rolsuper"] or r["rolcreaterole"] or r["rolcreatedb"] or r["rolbypassrls"])
            for r in attributes] == [(FRONTEND_ROLE, True, False), (PELICAN_ROLE, True, False)]
    # The column list in roles.GRANTS is the frontend's editable fields, no more.
    editable = {r["column_name"] for r in parts.conn.execute(
        "SELECT column_name FROM information_schema.column_privileges "
        "WHERE grantee = %s AND table_name = 'products' AND privilege_type = 'UPDATE'", (FRONTEND_ROLE,))}
    assert editable == set(EDITABLE)

    pid = parts.insert("Role Check", "captured by the admin's insert", price=10)
    other = parts.insert("Other", "untouched", price=20)

    # pelican ships the captured change with its own role, as the service does.
    queue = parts.env["SQS_QUEUE_URL"]
    # An administrator's session idle in a transaction with a snapshot: the app roles
    # cannot see its start in pg_stat_activity, yet read its age through vacuum_horizon().
    holder = psycopg.connect(stack.database_url, autocommit=True)
    holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    holder.execute("SELECT 1").fetchone()
    holder_pid = holder.info.backend_pid
    with db.connect(url_as(stack, PELICAN_ROLE, role_secrets[PELICAN_ROLE][1]), autocommit=True) as pelican:
        hidden = pelican.execute("SELECT xact_start FROM pg_stat_activity WHERE pid = %s", (holder_pid,)).fetchone()
        assert hidden == {"xact_start": None}
        assert change_log.vacuum_horizon(pelican).oldest_transaction_age_s > 0
        assert change_log.vacuum_horizon(pelican).outbox_dead_tuples >= 0
        pelican.execute("LISTEN product_changes")
        assert change_log.oldest_change_age(pelican) >= 0
        # cap=0: the statistics' estimate too, which pelican's ChangesWaiting reads past the cap
        assert change_log.count_changes(pelican, cap=0).n >= 1
        result = ship_batch(pelican, parts.sqs, queue, claim_limit=100, changes_per_message=10)
        assert result.changes_claimed == 2
        shipped = sorted(c["id"] for body in parts.drain_queue(queue, idle_rounds=1) for c in body["changes"])
        assert shipped == [pid, other]
        assert parts.pending_changes() == 0
        for statement in REFUSED_TO_BOTH + REFUSED_TO_PELICAN:
            assert refused(pelican, statement), f"{PELICAN_ROLE} was allowed: {statement}"

    # The frontend edits by primary key through its own code; the capture trigger records
    # the edit although the role cannot insert into the outbox itself.
    front_url = url_as(stack, FRONTEND_ROLE, role_secrets[FRONTEND_ROLE][1])
    with ConnectionPool(front_url, min_size=1, max_size=1, open=True,
                        **db.pool_options(front_url, application_name="frontend")) as pool:
        edit = apply_edit(pool, pid, {"name": "Role Check, edited", "price": Decimal("12.50")}, "tester",
                          DEFAULT_TEXT_TEMPLATE)
        assert edit.changed == ["name", "price"] and edit.version
        assert get_product(pool, pid)["name"] == "Role Check, edited"
        with pool.connection() as conn:
            assert change_log.count_changes(conn) == change_log.ChangeCount(1, True)
            assert change_log.count_changes(conn, cap=0).n >= 1
            assert change_log.oldest_change_age(conn) >= 0
            assert change_log.vacuum_horizon(conn).oldest_transaction_age_s > 0
            assert conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == 2
            from productsearch import lexical

            # keyword search's read, as the administrator reads it (an earlier test may have refit)
            terms = [lexical.term_id("role"), lexical.term_id("check")]
            assert lexical.query_statistics(conn, terms) == lexical.query_statistics(parts.conn, terms)
            for statement in REFUSED_TO_BOTH + REFUSED_TO_FRONTEND:
                assert refused(conn, statement), f"{FRONTEND_ROLE} was allowed: {statement}"
    holder.execute("ROLLBACK")
    holder.close()
    # Only the app roles may call it: EXECUTE is not PUBLIC's.
    acl = parts.conn.execute("SELECT proacl::text[] AS acl FROM pg_proc WHERE proname = 'vacuum_horizon'").fetchone()["acl"]
    assert not [entry for entry in acl if entry.startswith("=")]
    assert {entry.split("=")[0] for entry in acl} >= {PELICAN_ROLE, FRONTEND_ROLE}
    captured = parts.conn.execute("SELECT product_id, operation, version FROM product_changes").fetchall()
    assert [(r["product_id"], r["operation"], r["version"]) for r in captured] == [(pid, "update", edit.version)]
    assert parts.conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == 2


def test_rerun_takes_a_changed_password_and_removes_grants_added_by_hand(stack, parts, role_secrets):
    assert grant(stack, role_secrets).returncode == 0
    arn, old_password = role_secrets[FRONTEND_ROLE]
    parts.conn.execute(sql.SQL("GRANT INSERT, DELETE ON products, product_changes TO {}").format(sql.Identifier(FRONTEND_ROLE)))
    new_password = secrets.token_urlsafe(24)
    stack.aws_client("secretsmanager").put_secret_value(SecretId=arn, SecretString=json.dumps(
        {"username": FRONTEND_ROLE, "password": new_password}))

    again = grant(stack, role_secrets)
    assert again.returncode == 0, again.stderr
    assert new_password not in again.stdout + again.stderr
    with pytest.raises(psycopg.OperationalError) as refused_login:
        psycopg.connect(url_as(stack, FRONTEND_ROLE, old_password)).close()
    assert db.is_auth_failure(refused_login.value)
    with db.connect(url_as(stack, FRONTEND_ROLE, new_password), autocommit=True) as conn:
        assert refused(conn, "DELETE FROM products")
        assert refused(conn, "INSERT INTO product_changes (product_id, operation) VALUES (1, 'insert')")
        assert conn.execute("SELECT count(*) AS n FROM products").fetchone()["n"] == 0


def test_a_secret_naming_another_user_changes_nothing(stack, parts, role_secrets):
    sm = stack.aws_client("secretsmanager")
    wrong = sm.create_secret(Name=f"productsearch/test/wrong/{secrets.token_hex(4)}",
                             SecretString=json.dumps({"username": "products", "password": "not-the-admin-password"}))["ARN"]
    try:
        done = grant(stack, role_secrets, FRONTEND_DATABASE_SECRET_ARN=wrong)
    finally:
        sm.delete_secret(SecretId=wrong, ForceDeleteWithoutRecovery=True)
    assert done.returncode == 2
    assert "must hold the credentials of 'productsearch_frontend'" in done.stderr
    assert "not-the-admin-password" not in done.stdout + done.stderr
    # Checked before anything was written: the administrator's password still works, no role exists.
    psycopg.connect(stack.database_url).close()
    assert parts.conn.execute("SELECT count(*) AS n FROM pg_roles WHERE rolname = ANY(%s)",
                              ([PELICAN_ROLE, FRONTEND_ROLE],)).fetchone()["n"] == 0
