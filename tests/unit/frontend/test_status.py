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


def synced(**overrides) -> SyncStatus:
    values = dict(read_at="t", rows=5, vectors=5, changes_pending=0, changes_pending_exact=True,
                  oldest_unsynced_age_s=0.0, queue={"visible": 0, "in_flight": 0},
                  dead_letters={"visible": 0, "in_flight": 0}, oldest_transaction_age_s=0.0, outbox_dead_tuples=0,
                  age_s=1.0)
    return SyncStatus(**{**values, **overrides})


def test_in_sync_needs_a_fresh_reading_with_nothing_waiting_anywhere_and_equal_counts():
    assert synced().in_sync
    for overrides in ({"stale": True}, {"queue": {"visible": 0, "in_flight": 3}}, {"queue": {"visible": 1, "in_flight": 0}},
                      {"changes_pending": 2}, {"vectors": 4}, {"vectors": None}, {"queue": None}):
        status = synced(**overrides)
        assert not status.in_sync and not status.to_json()["in_sync"], overrides
        assert "In sync" not in status_markdown(status)


def test_nothing_waiting_never_stands_beside_a_waiting_count():
    for overrides in ({"queue": {"visible": 57, "in_flight": 16}}, {"queue": {"visible": 0, "in_flight": 1}},
                      {"changes_pending": 3, "oldest_unsynced_age_s": 0.0}, {"queue": None}):
        assert "nothing waiting" not in status_markdown(synced(**overrides)), overrides
    assert "| Age of the oldest unsynced change | none in the change log; 73 in the jobs queue" in status_markdown(
        synced(queue={"visible": 57, "in_flight": 16}))
    assert "| Age of the oldest unsynced change | nothing waiting |" in status_markdown(synced())


def test_every_reading_shows_its_age_and_a_stale_one_says_so():
    fresh = status_markdown(synced(age_s=3.0))
    assert "(3 s ago)" in fresh and "Stale" not in fresh
    stale = synced(age_s=240.0, stale=True)
    assert "**Stale reading**: taken 4 min ago" in status_markdown(stale)
    assert stale.to_json()["age_s"] == 240.0 and stale.to_json()["stale"] is True


def test_the_vacuum_horizon_rows():
    held = status_markdown(synced(oldest_transaction_age_s=600.0, outbox_dead_tuples=50_000))
    assert "| Oldest open transaction | 10 min |" in held
    assert "| Dead row versions in the change log | 50,000 |" in held
    assert "| Oldest open transaction | none |" in status_markdown(synced())
    assert "| Oldest open transaction | unavailable |" in status_markdown(SyncStatus(read_at="t"))
