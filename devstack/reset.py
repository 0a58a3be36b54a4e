"""A clean slate on a running local stack (tests and benchmarks, on a stack of their
own): empty table, change log, queues and index, and no index faults left over.
"""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING

import psycopg
from pinecone import Pinecone

from devstack.processes import wait_for
from productsearch.settings import IndexSettings

if TYPE_CHECKING:
    from devstack.stack import DevStack


def index_faults_url(stack: DevStack) -> str:
    """The index server's local-only fault injection API (see devstack.index_server.faults)."""
    return f"http://127.0.0.1:{stack.index_port}/_faults"


def clear_index_faults(stack: DevStack) -> None:
    """Drops every fault rule and releases requests a delay is holding."""
    urllib.request.urlopen(urllib.request.Request(index_faults_url(stack), method="DELETE"), timeout=5).read()


def reset_data(stack: DevStack) -> None:
    """Empties the table, the change log, the queues and the index, and drops injected
    index faults. Stop the apps first. It waits for the index server to finish the
    requests it holds: a write delayed by a fault and landing after the wipe would
    leave a vector whose version outranks the next rows' (the change ids restart).
    RuntimeError if the index still holds vectors afterwards."""
    clear_index_faults(stack)

    def index_quiet() -> bool:
        with urllib.request.urlopen(index_faults_url(stack), timeout=5) as response:
            return json.load(response)["in_flight_requests"] == 0

    wait_for("the index server to finish its requests", index_quiet, timeout=60)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # no change capture while clearing
        conn.execute("TRUNCATE products, product_changes, backfill_progress RESTART IDENTITY")
    # Recreated rather than purged: SQS allows one purge a minute, and messages left
    # in flight by a stopped app would reappear later.
    sqs = stack.aws_client("sqs")
    env = stack.env()
    for url in (env["SQS_QUEUE_URL"], env["SQS_DLQ_URL"]):
        sqs.delete_queue(QueueUrl=url)
    stack.create_queues()
    settings = IndexSettings.from_env(env)
    index = Pinecone(api_key=settings.api_key.get_secret_value()).index(host=settings.host)
    for namespace in (settings.namespace, settings.tombstone_namespace):
        if settings.api == "documents":
            index.documents.delete(namespace=namespace, delete_all=True)
        else:
            index.delete(delete_all=True, namespace=namespace)
    stats = index.describe_index_stats()
    left = {ns: s.vector_count for ns, s in (stats.namespaces or {}).items() if s.vector_count}
    if left.keys() & {settings.namespace, settings.tombstone_namespace}:
        raise RuntimeError(f"the index still holds vectors after the reset: {left}")
