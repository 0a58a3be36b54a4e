"""The libpq parameters every app's connections get (productsearch.db)."""

import psycopg
import pytest
from pydantic import SecretStr

from productsearch import db
from productsearch.settings import DatabaseSettings


@pytest.mark.parametrize("dead_s", [4, 5, 10, 30, 3600])
def test_keepalives_declare_a_silent_peer_dead_within_the_setting(dead_s):
    params = db.connection_params(DatabaseSettings(database_url=SecretStr("postgresql://h/db"), dead_connection_seconds=dead_s),
                                  application_name="t")
    assert params["keepalives"] == 1
    assert all(params[k] >= 1 for k in ("keepalives_idle", "keepalives_interval", "keepalives_count"))
    assert params["keepalives_idle"] + params["keepalives_interval"] * params["keepalives_count"] <= dead_s
    assert params["tcp_user_timeout"] == dead_s * 1000
    assert 2 <= params["connect_timeout"] <= dead_s


def test_statement_timeout_joins_the_urls_options_and_migrations_go_without():
    settings = DatabaseSettings(database_url=SecretStr("postgresql://h/db?options=-c%20search_path%3Dshop"),
                                statement_timeout_seconds=7)
    assert db.connection_params(settings, application_name="t")["options"] == "-c search_path=shop -c statement_timeout=7000ms"
    assert "options" not in db.connection_params(settings, application_name="t", statement_timeout=False)
    assert db.stall_limit_seconds(settings) == 7 + 30


def test_a_bare_url_gets_the_default_timeouts():
    params = db.connection_params("postgresql://h/db", application_name="script")
    assert params["tcp_user_timeout"] == 30_000 and params["options"] == "-c statement_timeout=30000ms"


@pytest.mark.parametrize("message, refused", [
    ('connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  password authentication failed for user "app"', True),
    ('connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  role "app_clone" does not exist', True),
    ('connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection refused', False),
    ("connection failed: FATAL:  the database system is starting up", False),
])
def test_only_refused_credentials_count_as_an_auth_failure(message, refused):
    assert db.is_auth_failure(psycopg.OperationalError(message)) is refused


def test_the_secrets_credentials_never_show_their_password():
    creds = db.Credentials("app", "s3cret-value")
    assert "s3cret-value" not in repr(creds) and creds.params() == {"user": "app", "password": "s3cret-value"}
