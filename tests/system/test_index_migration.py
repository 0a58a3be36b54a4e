"""`pelican migrate-index` end to end on the local stack: a second index server (metric
dotproduct) beside the stack's, emu and the frontend configured with PINECONE_NEXT_HOST,
and the command building the next index through the normal pipeline, then switching the
frontend to it (docs/index-migration.md).

The build is held deterministically: pelican is stopped while the command backfills, so
nothing reaches the next index until the test has searched and edited; only then does
pelican start and the command run to the switch."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from psycopg import errors

from devstack.stack import LOCAL_API_KEY
from devstack.waiting import wait_until
from productsearch import db
from productsearch.index import ProductIndex
from productsearch.roles import FRONTEND_ROLE
from productsearch.settings import DatabaseSettings, IndexSettings
from tests.conftest import REPO
from tests.e2e.frontend_stack import request
from tests.system.test_database_roles import grant, refused, role_secrets, url_as  # noqa: F401 - role_secrets is a fixture
from tests.system.test_index_server import ServerProcess

pytestmark = pytest.mark.stack


@pytest.fixture
def next_index(tmp_path):
    server = ServerProcess(tmp_path / "next-index", dimension=384, metric="dotproduct", api_key=LOCAL_API_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def serving_row(parts):
    """Leaves no serving_index row behind for the session's other tests."""
    parts.conn.execute("DELETE FROM serving_index")
    yield
    parts.conn.execute("DELETE FROM serving_index")


def handle(url: str) -> ProductIndex:
    return ProductIndex(IndexSettings.from_env({"PINECONE_HOST": url, "PINECONE_API_KEY": LOCAL_API_KEY}), attempts=3)


def migrate_index(stack, env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pelican", "migrate-index", *args], env=stack.app_env(env),
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=REPO)


def healthz(stack) -> dict:
    return request(stack.env()["FRONTEND_URL"] + "/healthz", timeout=5).body


def search(stack, query: str) -> list[int]:
    found = request(stack.env()["FRONTEND_URL"] + "/api/search", "POST", {"query": query, "top_k": 5})
    assert found.status == 200, found.body
    return [r["id"] for r in found.body["results"]]


def add_fault(server: ServerProcess, **rule) -> None:
    import json

    urllib.request.urlopen(urllib.request.Request(f"{server.url}/_faults", method="POST", data=json.dumps(rule).encode(),
                                                  headers={"Content-Type": "application/json"}), timeout=5).read()


@pytest.mark.slow
def test_migration_builds_the_next_index_while_the_old_one_serves_then_switches(stack, parts, next_index, serving_row):
    old, new = parts.index, handle(next_index.url)
    # An existing deployment: rows indexed into the old index only, emu without a next host.
    filler = parts.insert_many(30, prefix="gadget")
    telescope = parts.insert("Brass Telescope", "a brass refracting telescope for stargazing", 250)
    doomed = parts.insert("Paper Lantern", "a folding paper lantern", 12)
    rows = len(filler) + 2
    both = {"PINECONE_NEXT_HOST": next_index.url}
    stack.start_app("frontend", both)  # first: its model load overlaps the sync
    stack.start_app("pelican", options={"poll_interval_seconds": 1})
    stack.start_app("emu")
    wait_until(lambda: old.count() == rows and parts.pending_changes() == 0, 180, interval=0.5, what="rows in the old index")
    wait_until(lambda: _healthy(stack), 180, interval=0.5, what="frontend /healthz 200")
    assert healthz(stack)["index"] == "primary"

    # `pulumi up` compute: emu now writes both indexes. Pelican stays stopped to hold the build.
    stack.stop("emu")
    stack.stop("pelican")
    stack.start_app("emu", both, options={"max_index_attempts": 2})
    # The next index fails more upserts than one write's attempts: a batch written to the old
    # index and refused by the new one is held and written again, to both. (9: the SDK's
    # data-plane client also retries, up to 3 times per attempt.)
    add_fault(next_index, status=503, count=9, paths=["/vectors/upsert"])
    log = stack.root / "migrate-index.log"
    with open(log, "wb") as out:
        command = subprocess.Popen(
            [sys.executable, "-m", "pelican", "migrate-index", "--yes", "--timeout", "300", "--poll-seconds", "1",
             "--frontend-url", stack.env()["FRONTEND_URL"]],
            env=stack.app_env(both), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_until(lambda: parts.conn.execute("SELECT finished_at FROM backfill_progress").fetchone(), 60,
                   what="the command's backfill")
        assert command.poll() is None, log.read_text()

        # While it builds the old index serves: the next one holds nothing yet.
        assert new.count() == 0
        assert search(stack, "brass telescope for stargazing")[0] == telescope
        assert healthz(stack)["index"] == "primary"
        # Edits during the build.
        parts.conn.execute("UPDATE products SET description = 'a brass telescope, refurbished' WHERE id = %s", (telescope,))
        edited = parts.conn.execute("SELECT version FROM products WHERE id = %s", (telescope,)).fetchone()["version"]
        parts.conn.execute("DELETE FROM products WHERE id = %s", (doomed,))

        stack.start_app("pelican", options={"poll_interval_seconds": 1})
        assert command.wait(timeout=300) == 0, log.read_text()
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    output = log.read_text()
    assert "The next index equals the table" in output and "Switched" in output, output
    assert "Every frontend given serves from the next index" in output and "pineconeRetiringIndexName" in output

    # The edit and the deletion reached both indexes; the held batch was written again.
    for index in (old, new):
        assert index.fetch_versions([str(telescope)]) == {str(telescope): edited}
        assert index.fetch([str(doomed)]) == {}
    assert "index unavailable; pausing receiving and holding the batch" in stack.log_path("emu").read_text()
    from pelican.reconcile import reconcile

    database = DatabaseSettings.from_env(stack.env())
    for url in (next_index.url, stack.env()["PINECONE_HOST"]):
        report = reconcile(database, handle(url).settings, progress=False)
        assert report.clean and report.rows == rows - 1, (url, report.summary_line())

    # The frontend serves from the new index: a vector gone from the old one is still found.
    assert healthz(stack)["index"] == "next"
    old.delete_ids([str(telescope)])
    assert search(stack, "brass telescope refurbished")[0] == telescope

    # A row naming a host the frontend is not configured with is not followed.
    parts.conn.execute("UPDATE serving_index SET host = 'http://127.0.0.1:9'")
    wait_until(lambda: healthz(stack)["index"].startswith("primary ("), 30, what="frontend back on PINECONE_HOST")
    assert "not configured" in healthz(stack)["index"] and "127.0.0.1:9" not in str(healthz(stack))
    assert telescope not in search(stack, "brass telescope refurbished")
    frontend_log = stack.log_path("frontend").read_text()
    assert frontend_log.count("the serving_index row names a host this frontend is not configured with") == 1


def test_migration_moves_a_legacy_index_to_a_document_index(stack, parts, serving_row):
    """The move to Pinecone's Documents API: the next index is a document index (full-text
    search on the product text and SKU) on the stack's index server; emu writes documents
    to it beside the legacy records, and after the switch the frontend's keyword search is
    Pinecone's full-text search."""
    from pinecone import Pinecone

    host = stack.create_document_index("products-next")
    both = {"PINECONE_NEXT_HOST": host, "PINECONE_NEXT_INDEX_API": "documents"}
    new = ProductIndex(IndexSettings.from_env({**stack.env(), **both}).for_host(host), attempts=3)
    try:
        filler = parts.insert_many(20, prefix="gizmo")
        telescope = parts.insert("Brass Telescope", "a brass refracting telescope for stargazing", 250, sku="TEL-4410")
        stack.start_app("frontend", both)
        stack.start_app("pelican", options={"poll_interval_seconds": 1})
        stack.start_app("emu", both)
        wait_until(lambda: parts.index.count() == len(filler) + 1 and parts.pending_changes() == 0, 180, interval=0.5,
                   what="rows in the legacy index")
        wait_until(lambda: _healthy(stack), 180, interval=0.5, what="frontend /healthz 200")
        done = migrate_index(stack, both, "--yes", "--timeout", "120", "--poll-seconds", "1", "--frontend-url",
                             stack.env()["FRONTEND_URL"], timeout=240)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "(vectors API)" in done.stdout and "(documents API" in done.stdout
        assert "pulumi config set pineconeIndexApi documents" in done.stdout
        assert healthz(stack)["index"] == "next"
        assert new.count() == len(filler) + 1
        # Keyword search now runs on the document index's full-text search.
        found = request(stack.env()["FRONTEND_URL"] + "/api/search", "POST", {"query": "TEL-4410", "mode": "keyword"})
        assert found.status == 200 and found.body["results"][0]["id"] == telescope, found.body
        parts.index.delete_ids([str(telescope)])  # gone from the legacy index; the document index serves it
        assert search(stack, "brass telescope for stargazing")[0] == telescope
    finally:
        Pinecone(api_key=LOCAL_API_KEY, host=f"http://127.0.0.1:{stack.index_port}").indexes.delete("products-next")


def _healthy(stack) -> bool:
    proc = stack.processes.get("frontend")
    if proc is not None and proc.poll() is not None:
        raise AssertionError("frontend exited:\n" + stack.log_path("frontend").read_text()[-3000:])
    try:
        return request(stack.env()["FRONTEND_URL"] + "/healthz", timeout=3).status == 200
    except OSError:
        return False


def test_migration_refuses_what_it_cannot_do_and_switches_nothing(stack, parts, next_index, serving_row, tmp_path):
    nothing_set = migrate_index(stack, {}, "--yes")
    assert nothing_set.returncode == 1 and "PINECONE_NEXT_HOST is not set" in nothing_set.stderr

    cosine = ServerProcess(tmp_path / "cosine-index", dimension=384, metric="cosine", api_key=LOCAL_API_KEY).start()
    try:
        wrong_metric = migrate_index(stack, {"PINECONE_NEXT_HOST": cosine.url}, "--yes")
    finally:
        cosine.stop()
    assert wrong_metric.returncode == 1 and "metric is cosine, not dotproduct" in wrong_metric.stderr

    unreachable = migrate_index(stack, {"PINECONE_NEXT_HOST": "http://127.0.0.1:9"}, "--yes")
    assert unreachable.returncode == 1 and "cannot reach the next (PINECONE_NEXT_HOST) index" in unreachable.stderr

    env = {"PINECONE_NEXT_HOST": next_index.url}
    unconfirmed = migrate_index(stack, env)  # stdin closed: no answer is no
    assert unconfirmed.returncode == 1 and "not confirmed (pass --yes" in unconfirmed.stderr

    parts.sqs.send_message(QueueUrl=parts.env["SQS_DLQ_URL"], MessageBody='{"reason": "test", "product_id": 1}',
                           MessageGroupId="1", MessageDeduplicationId="dead-1")
    dead = migrate_index(stack, env, "--yes")
    assert dead.returncode == 1 and "in the dead-letter queue" in dead.stderr and "pelican redrive" in dead.stderr

    # Nothing writes the next index (as with emu deployed without PINECONE_NEXT_HOST): the
    # pipeline goes idle with the next index behind.
    parts.drain_queue(parts.env["SQS_DLQ_URL"], idle_rounds=1)
    parts.insert("Lonely Row", "never reaches the next index")
    parts.conn.execute("DELETE FROM product_changes")
    idle = migrate_index(stack, env, "--yes", "--skip-backfill", "--poll-seconds", "0.2")
    assert idle.returncode == 1 and "the pipeline is idle but the next index still differs" in idle.stderr, idle.stderr
    assert "PINECONE_NEXT_HOST" in idle.stderr
    assert parts.conn.execute("SELECT count(*) AS n FROM serving_index").fetchone()["n"] == 0


def test_only_the_administrator_writes_the_serving_row(stack, parts, role_secrets, serving_row):  # noqa: F811
    assert grant(stack, role_secrets).returncode == 0
    parts.conn.execute("INSERT INTO serving_index (host) VALUES ('http://127.0.0.1:1')")
    with db.connect(url_as(stack, FRONTEND_ROLE, role_secrets[FRONTEND_ROLE][1]), autocommit=True) as frontend:
        assert frontend.execute("SELECT host FROM serving_index").fetchone()["host"] == "http://127.0.0.1:1"
        for statement in ("UPDATE serving_index SET host = 'http://evil.example'", "DELETE FROM serving_index",
                          "INSERT INTO serving_index (one_row, host) VALUES (true, 'http://x')"):
            assert refused(frontend, statement), statement
    # One row at most, and only a normalised host.
    with pytest.raises(errors.UniqueViolation):
        parts.conn.execute("INSERT INTO serving_index (host) VALUES ('http://127.0.0.1:2')")
    with pytest.raises(errors.CheckViolation):
        parts.conn.execute("UPDATE serving_index SET host = 'HTTP://Upper.Example/path'")
