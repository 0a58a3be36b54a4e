"""Postgres going silent (no FIN, no RST, as in an RDS Multi-AZ failover) and
Postgres without the schema, against the real local parts. A loopback proxy
(tests.kit.tcp_proxy) stands between the apps and Postgres and drops their
connections silently; the test itself talks to Postgres directly."""

from __future__ import annotations

import socket
import threading
import uuid

import psycopg
import pytest
from pydantic import SecretStr

from tests.kit.tcp_proxy import TcpProxy
from devstack.waiting import wait_until
from productsearch import db, migrations
from productsearch.settings import DatabaseSettings
from tests.e2e.frontend_stack import request

pytestmark = pytest.mark.stack

# Scaled down from the 30 s defaults so a stall is cut after 2 + 4 = 6 s.
DEAD_S, STATEMENT_S = 4, 2
SCALED = {"database.dead_connection_seconds": DEAD_S, "database.statement_timeout_seconds": STATEMENT_S}  # options
NOTICE_WITHIN_S = 60  # the most a dead connection may go unnoticed: twice the default cut-off


@pytest.fixture
def proxy(stack):
    with TcpProxy(stack.pg_port) as p:
        yield p


def via(stack, proxy: TcpProxy) -> str:
    return stack.database_url.replace(f":{stack.pg_port}/", f":{proxy.port}/")


def log_text(stack, name: str) -> str:
    path = stack.log_path(name)
    return path.read_text(errors="replace") if path.exists() else ""


def app_connections(parts, *names: str) -> int:
    return parts.conn.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = ANY(%s)",
                              (list(names),)).fetchone()["n"]


def test_connections_carry_keepalives_and_a_statement_timeout_that_spares_idle_listeners(stack, parts):
    settings = DatabaseSettings(database_url=SecretStr(stack.database_url), dead_connection_seconds=DEAD_S, statement_timeout_seconds=1)
    with db.connect(settings, autocommit=True, application_name="sockopts") as conn:
        sock = socket.socket(fileno=conn.fileno())
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            interval = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL)
            count = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT)
            assert idle + interval * count <= DEAD_S
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == DEAD_S * 1000
        finally:
            sock.detach()  # the fd is libpq's
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "1s"
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(3)")

        # A LISTEN connection idles for longer than the statement timeout and still hears.
        conn.execute("LISTEN failover_test")
        assert list(conn.notifies(timeout=2.5)) == []
        parts.conn.execute("NOTIFY failover_test, 'still here'")
        heard = list(conn.notifies(timeout=10, stop_after=1))
        assert [n.payload for n in heard] == ["still here"]
        assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1

    with db.connect(settings, application_name="migrate-like", statement_timeout=False) as conn:
        assert conn.execute("SHOW statement_timeout").fetchone()["statement_timeout"] == "0"


def test_a_silent_connection_fails_instead_of_hanging(stack, proxy):
    settings = DatabaseSettings(database_url=SecretStr(via(stack, proxy)), dead_connection_seconds=DEAD_S, statement_timeout_seconds=STATEMENT_S)
    conn = db.connect(settings, autocommit=True, application_name="silent")
    assert conn.execute("SELECT 1 AS one").fetchone()["one"] == 1
    assert proxy.blackhole() == 1
    outcome: list[BaseException | None] = []

    def query() -> None:
        try:
            conn.execute("SELECT 1")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=query, daemon=True)
    worker.start()
    worker.join(NOTICE_WITHIN_S)
    assert outcome, f"a query on a silent connection still hangs after {NOTICE_WITHIN_S}s"
    assert isinstance(outcome[0], psycopg.OperationalError), outcome
    assert "did not answer" in str(outcome[0])
    assert conn.closed
    # The socket was shut down, not left open: nothing more can arrive on it.
    conn.close()


def test_pelican_notices_a_silent_drop_reconnects_and_ships_what_changed_meanwhile(stack, parts, proxy):
    stack.start_app("emu")
    pelican = stack.start_app("pelican", {"DATABASE_URL": via(stack, proxy)},
                              options={"poll_interval_seconds": 1, **SCALED})
    first = parts.insert("Before Drop", "shipped while the network was fine")
    wait_until(lambda: parts.vector(first), 90, what="first row indexed")
    wait_until(lambda: app_connections(parts, "pelican", "pelican-listen") == 2, 30, what="pelican's two connections open")

    assert proxy.blackhole() >= 2
    meanwhile = parts.insert("During Drop", "written while pelican's connections were silently dead")
    wait_until(lambda: "database did not answer" in log_text(stack, "pelican"), NOTICE_WITHIN_S,
               what="pelican noticing its silent connection")
    wait_until(lambda: log_text(stack, "pelican").count("database connection lost; reconnecting") >= 1, 10,
               what="pelican reconnecting")
    # Every connection through the proxy is silent until restore(): nothing can have shipped it.
    assert parts.pending_changes() == 1
    assert pelican.poll() is None, log_text(stack, "pelican")[-3000:]

    proxy.restore()  # the database answers again (the new primary is up)
    wait_until(lambda: parts.vector(meanwhile), NOTICE_WITHIN_S, what="row written during the drop indexed")
    assert parts.pending_changes() == 0


def test_frontend_answers_cleanly_through_a_silent_drop_and_recovers(stack, parts, proxy):
    pid = parts.insert("Frontend Row", "read through the pool")
    stack.start_app("frontend", {"DATABASE_URL": via(stack, proxy)}, options=SCALED)
    url = f"{stack.env()['FRONTEND_URL']}/api/products/{pid}"

    def answers() -> int | None:
        proc = stack.processes["frontend"]
        assert proc.poll() is None, log_text(stack, "frontend")[-3000:]
        try:
            return request(url, timeout=5).status
        except OSError:
            return None

    assert wait_until(lambda: answers() == 200, 120, interval=0.5, what="frontend serving the product")
    wait_until(lambda: app_connections(parts, "frontend") >= 1, 30, what="the frontend's pool connected")
    assert proxy.blackhole() >= 1
    proxy.restore()  # new connections work at once; the pooled ones are silently dead

    during = [request(url, timeout=NOTICE_WITHIN_S).status for _ in range(3)]
    assert all(status in (200, 503) for status in during), during
    assert "database did not answer" in log_text(stack, "frontend"), "no request met a silent pooled connection"
    wait_until(lambda: answers() == 200, NOTICE_WITHIN_S, interval=0.5, what="frontend serving again")


@pytest.fixture
def empty_database(stack):
    name = f"schemaless_{uuid.uuid4().hex[:8]}"
    admin_url = stack.database_url.replace("/products?", "/postgres?")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield stack.database_url.replace("/products?", f"/{name}?")
    for proc_name in ("pelican",):
        stack.stop(proc_name, timeout=20)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_pelican_started_before_the_schema_waits_for_it(stack, parts, empty_database):
    pelican = stack.start_app("pelican", {"DATABASE_URL": empty_database}, options={"poll_interval_seconds": 1})
    wait_until(lambda: log_text(stack, "pelican").count("schema not found; waiting") >= 3, 60,
               what="pelican waiting for the schema, several times")
    assert pelican.poll() is None, "pelican exited instead of waiting:\n" + log_text(stack, "pelican")[-3000:]

    assert migrations.migrate(empty_database) == [name for name, _ in migrations.migration_files()]
    with db.connect(empty_database, autocommit=True) as conn:
        pid = conn.execute(
            "INSERT INTO products (name, sku, description, price) VALUES ('Late Schema', 'LS-1', 'after the migration', 9) RETURNING id"
        ).fetchone()["id"]
        wait_until(lambda: conn.execute("SELECT count(*) AS n FROM product_changes").fetchone()["n"] == 0, 60,
                   what="pelican shipping the change once the schema exists")
    shipped = [c["id"] for body in parts.drain_queue(parts.env["SQS_QUEUE_URL"]) for c in body["changes"]]
    assert shipped == [pid]
    assert pelican.poll() is None
