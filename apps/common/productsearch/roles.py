"""The apps' least-privilege database roles, created and granted by `pelican
grant-roles`, which runs as the administrator (the RDS master secret) after `pelican
migrate`, from the operator task.

Each app connects as its own LOGIN role, whose username and password are in a Secrets
Manager secret of its own (JSON with username and password). Each role holds exactly
the privileges its long-running app needs (GRANTS); the one-off commands (migrate,
grant-roles, load-catalog, backfill, reconcile, redrive, refit-lexical) run as the administrator in
the operator task, so no app role needs INSERT on the outbox, DDL, or the
bookkeeping tables (schema_migrations, backfill_progress, product_price_quarantine).

The frontend's edits fire the capture trigger, which inserts into product_changes: the
capture functions run as their owner (schema/current.sql), so the frontend's
role needs no INSERT there.

grant_roles converges: it creates a missing role, sets each role's password from its
secret (re-run it after changing a secret), revokes whatever else the role holds on the
schema's tables, sequences and the schema itself, and grants GRANTS, all in one
transaction, under the migration lock. The password reaches the server only as a
SCRAM verifier computed here, so no statement log holds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from psycopg import sql

from productsearch import db, migrations
from productsearch.settings import AppRoleSettings, ConfigError, DatabaseSettings

log = logging.getLogger(__name__)

PELICAN_ROLE = "productsearch_pelican"
FRONTEND_ROLE = "productsearch_frontend"

# {schema} is the schema holding the tables; {role} the app role. Nothing else is granted.
GRANTS: dict[str, tuple[str, ...]] = {
    PELICAN_ROLE: (
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        # ship_batch reads the products' current rows ...
        "GRANT SELECT ON {schema}.products TO {role}",
        # ... claims outbox rows and deletes them once sent; the service reads their age.
        "GRANT SELECT, DELETE ON {schema}.product_changes TO {role}",
        # The claim's SELECT ... FOR UPDATE needs UPDATE on at least one column of the table
        # it locks. `operation` is the column no reader of the outbox acts on.
        "GRANT UPDATE (operation) ON {schema}.product_changes TO {role}",
        # Each shipped batch carries the lexical corpus parameters (outbox.corpus_parameters);
        # only `pelican refit-lexical`, as the administrator, writes the statistics.
        "GRANT SELECT ON {schema}.lexical_corpus TO {role}",
        # OldestTransactionAgeSeconds and OutboxDeadTuples: two numbers from
        # pg_stat_activity read as the function's owner (vacuum_horizon() in schema/current.sql), not pg_monitor.
        "GRANT EXECUTE ON FUNCTION {schema}.vacuum_horizon() TO {role}",
    ),
    FRONTEND_ROLE: (
        "GRANT USAGE ON SCHEMA {schema} TO {role}",
        # Search results, product pages, categories and the status panel's row count.
        "GRANT SELECT ON {schema}.products TO {role}",
        # Exactly frontend.editing.EDITABLE (the test checks the two agree). The version
        # and updated_at are set by BEFORE triggers, which need no column privilege; the
        # edit's SELECT ... FOR UPDATE is covered by these columns.
        "GRANT UPDATE (name, description, price) ON {schema}.products TO {role}",
        # The status panel's count of changes not yet shipped.
        "GRANT SELECT ON {schema}.product_changes TO {role}",
        # Keyword and hybrid search weight a query's terms by the last fit (lexical.query_statistics).
        "GRANT SELECT ON {schema}.lexical_corpus, {schema}.lexical_terms TO {role}",
        # Which index serves (schema/000_baseline.sql); only migrate-index, as the
        # administrator, writes it.
        "GRANT SELECT ON {schema}.serving_index TO {role}",
        # The status panel's oldest transaction and outbox dead tuples (vacuum_horizon()).
        "GRANT EXECUTE ON FUNCTION {schema}.vacuum_horizon() TO {role}",
    ),
}


class RoleError(RuntimeError):
    """The roles cannot be granted as things stand; the message says why and what to do."""


@dataclass(frozen=True)
class _AppRole:
    name: str
    secret_arn: str


def app_roles(settings: AppRoleSettings) -> list[_AppRole]:
    """The roles grant_roles manages, each with the secret that holds its credentials."""
    return [_AppRole(PELICAN_ROLE, settings.PELICAN_DATABASE_SECRET_ARN), _AppRole(FRONTEND_ROLE, settings.FRONTEND_DATABASE_SECRET_ARN)]


def grant_roles(database: DatabaseSettings | str, settings: AppRoleSettings) -> list[str]:
    """Creates or updates every app role from its secret and grants it GRANTS, nothing
    more; returns the role names. `database` must connect as an administrator (a role
    with CREATEROLE that owns the schema, as the RDS master user).

    Raises ConfigError when a secret's username is not the role it is for,
    RoleError when the schema is not fully migrated or an existing role holds more
    than an app role may (attributes or memberships this command would not remove),
    and db.SecretUnavailable when a secret cannot be read. Writes nothing unless
    every role succeeds."""
    roles = app_roles(settings)
    credentials = {}
    for role in roles:
        current = db.SecretCredentials(role.secret_arn, settings.aws_endpoint_url).current()
        if current.username != role.name:
            # The name is fixed here because the grants are: a secret naming another role
            # (the administrator, say) must not get its password changed.
            raise ConfigError(f"the secret {role.secret_arn} is for user {current.username!r}; "
                              f"it must hold the credentials of {role.name!r}")
        credentials[role.name] = current

    with db.connect(database, application_name="grant-roles", statement_timeout=False) as conn, conn.transaction():
        # The same lock as migrate: grants are never computed against a schema mid-change.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (migrations.MIGRATION_LOCK_KEY,))
        schema = _migrated_schema(conn)
        for role in roles:
            verifier = conn.pgconn.encrypt_password(credentials[role.name].password.encode(), role.name.encode(),
                                                    b"scram-sha-256").decode()
            _create_or_update(conn, role.name, verifier)
            names = {"schema": sql.Identifier(schema), "role": sql.Identifier(role.name)}
            # Converge: rights granted by hand or by an older version of this list go.
            for revoke in ("REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {role}",
                           "REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {role}",
                           "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {schema} FROM {role}",
                           "REVOKE ALL ON SCHEMA {schema} FROM {role}"):
                conn.execute(sql.SQL(revoke).format(**names))
            for grant in GRANTS[role.name]:
                conn.execute(sql.SQL(grant).format(**names))
    names = [role.name for role in roles]
    log.info("database roles granted", extra={"roles": names, "schema": schema})
    return names


def _migrated_schema(conn) -> str:
    """The schema that holds the tables; RoleError unless every migration file is applied."""
    if conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL AS ok").fetchone()["ok"]:
        done = {r["name"] for r in conn.execute("SELECT name FROM schema_migrations")}
    else:
        done = set()
    missing = [name for name, _ in migrations.migration_files() if name not in done]
    if missing:
        raise RoleError(f"the schema is not up to date (not applied: {', '.join(missing)}); run `pelican migrate` first")
    return conn.execute(
        "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = 'products'::regclass"
    ).fetchone()["nspname"]


def _create_or_update(conn, role: str, verifier: str) -> None:
    existing = conn.execute(
        """SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls AS elevated,
                  EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.member = r.oid) AS member_of_roles
           FROM pg_roles r WHERE rolname = %s""", (role,)).fetchone()
    name, password = sql.Identifier(role), sql.Literal(verifier)
    if existing is None:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(name, password))
        log.info("database role created", extra={"role": role})
        return
    if existing["elevated"] or existing["member_of_roles"]:
        # Removing them takes superuser on RDS, and a role in that state was changed by hand.
        raise RoleError(f"the role {role} exists with attributes or role memberships an app role must not have; "
                        f"remove them (ALTER ROLE ... NOCREATEROLE ..., REVOKE <role> FROM {role}) and run again")
    conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(name, password))
