"""The status panel's text for the change-log figures (frontend/status.py)."""

from __future__ import annotations

from frontend.status import SyncStatus, status_markdown


def test_an_estimated_change_count_is_shown_as_one():
    estimated = SyncStatus(read_at="t", changes_pending=4_000_000, changes_pending_exact=False,
                           oldest_unsynced_age_s=12.0)
    assert "| Changes waiting in the change log | about 4,000,000 (estimate) |" in status_markdown(estimated)
    assert estimated.to_json()["changes_pending_exact"] is False
    exact = SyncStatus(read_at="t", changes_pending=12, changes_pending_exact=True, oldest_unsynced_age_s=1.0)
    assert "| Changes waiting in the change log | 12 |" in status_markdown(exact)
    assert "| Changes waiting in the change log | unavailable |" in status_markdown(SyncStatus(read_at="t"))
