from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import psycopg
import pytest
from psycopg import sql

from devstack.index_server.faults import FAULT_EXEMPT_HEADER
from devstack.reset import reset_data
from productsearch import db
from productsearch.documents import indexed_text, text_hash
from productsearch.index import ProductIndex
from productsearch.settings import DEFAULT_TEXT_TEMPLATE, IndexSettings


class Parts:
    """Handles on the real local parts, reset to empty before each test."""

    def __init__(self, stack):
        self.stack = stack
        env = stack.env()
        self.env = env
        kwargs = dict(region_name=env["AWS_REGION"], endpoint_url=env["AWS_ENDPOINT_URL"],
                      aws_access_key_id="local", aws_secret_access_key="local")
        self.sqs = boto3.client("sqs", **kwargs)
        self.sns = boto3.client("sns", **kwargs)
        # The test's own reads must neither meet nor use up the faults it injects for the services.
        self.index = ProductIndex(IndexSettings.from_env(env), attempts=3, headers={FAULT_EXEMPT_HEADER: "1"})
        self.conn = db.connect(env["DATABASE_URL"], autocommit=True)

    def reset(self) -> None:
        reset_data(self.stack)
        # Each test reads only its own apps' logs.
        for log in (self.stack.root / "logs").glob("*.log"):
            if log.stem not in ("postgres", "aws", "index"):
                log.unlink()

    # -- table helpers --------------------------------------------------------------
    def insert(self, name: str, description: str, price: float = 100.0, sku: str | None = None, category: str = "") -> int:
        sku = sku or f"SKU-{name}-{description}"[:90]
        row = self.conn.execute(
            "INSERT INTO products (name, sku, description, price, category) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (name, sku, description, price, category),
        ).fetchone()
        return row["id"]

    def insert_many(self, n: int, prefix: str = "item") -> list[int]:
        with self.conn.cursor() as cur:
            cur.execute(
                """INSERT INTO products (name, sku, description, price, category)
                   SELECT %s || ' ' || g, %s || '-' || g, 'description number ' || g || ' of a ' || %s, (g %% 900) + 100, 'gadget'
                   FROM generate_series(1, %s) g RETURNING id""",
                (prefix, prefix, prefix, n),
            )
            return [r["id"] for r in cur.fetchall()]

    def pending_changes(self) -> int:
        return self.conn.execute("SELECT count(*) AS n FROM product_changes").fetchone()["n"]

    def vector(self, product_id: int):
        return self.index.fetch([str(product_id)]).get(str(product_id))

    def holds_description(self, product_id: int, description: str, name: str | None = None) -> bool:
        """Whether the index holds the product's record with this description: its text
        fingerprint is that of `name` (default: the row's name now) and `description`
        under the default INDEXED_TEXT_TEMPLATE. The record keeps no text itself."""
        vector = self.vector(product_id)
        if vector is None:
            return False
        if name is None:
            row = self.conn.execute("SELECT name FROM products WHERE id = %s", (product_id,)).fetchone()
            if row is None:
                return False
            name = row["name"]
        text = indexed_text({"name": name, "description": description}, DEFAULT_TEXT_TEMPLATE)
        return (vector.metadata or {}).get("text_hash") == text_hash(text)

    def drain_queue(self, url: str, idle_rounds: int = 2) -> list[dict]:
        """Receives and deletes everything on a queue (for tests that run no emu)."""
        out, idle = [], 0
        while idle < idle_rounds:
            got = self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
            if not got:
                idle += 1
                continue
            idle = 0
            for m in got:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return out


@contextmanager
def scratch_database(stack, name: str) -> Iterator[str]:
    """An empty database `name` beside the stack's own for the length of a with block;
    yields its URL. Dropped before and after, with FORCE: a test may leave connections open."""
    admin_url = stack.database_url.replace("/products?", "/postgres?")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield stack.database_url.replace("/products?", f"/{name}?")
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(drop)


@pytest.fixture
def parts(stack):
    p = Parts(stack)
    p.reset()
    yield p
    for name in list(stack.processes):
        if name not in ("postgres", "aws", "index"):
            stack.stop(name, timeout=20)
    p.conn.close()
