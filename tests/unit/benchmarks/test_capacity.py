"""The capacity model (benchmarks/capacity.py) on a fixture cost file: the figures it
derives, worked out by hand, and the report it writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import capacity

FIXTURE = Path(__file__).parent / "fixtures" / "cost.json"


@pytest.fixture()
def costs():
    return capacity.Costs.load(FIXTURE)


def test_task_rates(costs):
    steady = costs.shapes["scattered"]
    # CPU: min(300 texts/s x 0.8 / 1 text a change, 2 vCPU / 0.012 s) = min(240, 166.7)
    assert capacity.task_rate(costs, steady, "cpu") == pytest.approx(2 / 0.012)
    # GPU: 7,000 x 0.8; a hot change needs half a text, so twice the changes.
    assert capacity.task_rate(costs, steady, "gpu") == pytest.approx(5600)
    assert capacity.task_rate(costs, costs.shapes["hot"], "gpu") == pytest.approx(11200)


def test_scattered_changes_meet_the_namespace_request_limit_first(costs):
    # 40 index requests per 1,000 scattered changes: 25 changes a request, 2,500 changes/s at
    # 100 requests/s, far below the ~23,810 changes/s that 50 MB/s of 2,100-byte records allow.
    limits = capacity.ceilings(costs, costs.shapes["scattered"])
    assert limits["Pinecone upsert bytes/s per namespace"] == pytest.approx(50_000_000 / 2100)
    assert limits["Pinecone upsert requests/s per namespace"] == pytest.approx(100 * 1000 / 40)
    assert limits["SQS FIFO transactions/s"] == pytest.approx(70_000 * 1000 / 80)
    assert min(limits, key=limits.get) == "Pinecone upsert requests/s per namespace"


def test_monthly_cost_adds_tasks_writes_storage_and_queue(costs):
    steady = costs.shapes["scattered"]
    month = capacity.steady_month_usd(costs, steady, 1_000_000, 10, "cpu", 1)
    changes = 10 * 730 * 3600
    pinecone = changes / 1000 * (3000 * 4e-6 + 200 * 16e-6) + 1_000_000 * 2100 / 1e9 * 0.33
    sqs = changes / 1000 * 80 * 0.5e-6
    pelican = (0.25 * 0.000011244 * 3600 + 0.5 * 0.004445) * 730
    assert month == pytest.approx(capacity.emu_task_month_usd("cpu") + pelican + pinecone + sqs)


def test_report_covers_every_size_and_rate_and_cites_every_quota(costs, tmp_path):
    target = tmp_path / "scaling.md"
    assert capacity.main([str(FIXTURE), str(target)]) == 0
    text = target.read_text()
    for products in capacity.PRODUCTS:
        for rate in capacity.RATES:
            assert f"| {products:,} | {rate:,} |" in text
    assert "estimate" in text and "Dedicated Read Nodes" in text
    steady = text.split("## Full backfill")[0]
    # Past ~2,500 changes/s the namespace limits; below it, emu tasks do.
    assert "| 1,000,000 | 10,000 | Pinecone upsert requests/s per namespace (~2,500 changes/s)" in steady
    assert "| 1,000,000 | 1,000 | emu tasks (add more) | 6 / 1 |" in steady
    # 1B products: import from object storage rather than the pipeline.
    assert "| 1,000,000,000 |" in text and "yes: Pinecone advises import" in text
    for name, quota in capacity.QUOTAS.items():
        assert f"`{name}`" in text and quota.source and quota.read
    # The backfill of 1M products on the CPU fleet: 50 tasks x 200 changes/s = 10,000/s, below
    # the backfill shape's 12,500 changes/s namespace ceiling (8 requests per 1,000 changes).
    assert f"| 1,000,000 | {capacity.duration(1_000_000 / 10_000)} |" in text
    assert math.isclose(capacity.task_rate(costs, costs.shapes["backfill"], "cpu"), 200)


def test_docs_scaling_is_the_report_of_the_stored_costs():
    """docs/scaling.md is generated: it must say what results/cost.json gives today."""
    from benchmarks.capacity import Costs, report
    from tests.conftest import REPO

    assert (REPO / "docs" / "scaling.md").read_text() == report(Costs.load(REPO / "results" / "cost.json")), \
        "docs/scaling.md is out of date: run python -m benchmarks.capacity"
