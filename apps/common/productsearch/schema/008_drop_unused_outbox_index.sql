-- The outbox's index on product_id goes: no app's query reads product_changes by product.
--
-- 001 created product_changes_product_idx, but pelican claims change rows in id order
-- (the primary key) and deletes them by id, recapture and backfill only insert, and
-- the status panel counts rows and reads the oldest captured_at; emu, not the outbox,
-- keeps the newest change per product. So every captured write paid for an index
-- that no app reads: one more B-tree insertion (and its WAL) in the writer's
-- transaction, and one more deletion when pelican ships the change. Writers pay for
-- capture on the hot path (the project's goal: capture costs single-row writers at
-- most a quarter of their rate), so what buys nothing is removed. Three readers outside the apps look rows up
-- by product and now scan the outbox, which pelican keeps small: `make up`'s check for
-- uncaptured rows (devstack/up.py, once per start), the capture benchmark's freshness
-- probe and one schema test.
--
-- A brief exclusive lock on the outbox while the index is dropped; the outbox is
-- small, as pelican empties it continuously. Idempotent: it may run again.

DROP INDEX IF EXISTS product_changes_product_idx;
