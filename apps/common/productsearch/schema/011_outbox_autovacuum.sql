-- The outbox is a queue table: every captured change is inserted once and deleted
-- once pelican shipped it, so nearly every row it ever held is dead, and each claim
-- (pelican/outbox.py) walks the primary key's index past the dead entries at its
-- head until vacuum removes them.
--
-- PostgreSQL's defaults vacuum a table once its dead rows pass 50 plus 20% of its
-- live rows (autovacuum_vacuum_threshold, autovacuum_vacuum_scale_factor), and slow
-- each vacuum down with a cost delay. For a table that is small while it keeps up and
-- is churned through constantly that is both too late and too slow. So:
--   * vacuum after a fixed number of dead rows, whatever the live count (scale
--     factor 0, threshold 1000: a few claims' worth);
--   * no cost delay: a vacuum of this table touches few pages and should finish at
--     once rather than stretch over the next burst of changes.
-- Per-table storage parameters (PostgreSQL docs: CREATE TABLE, "Storage
-- Parameters"), so the rest of the database keeps the server's settings.
--
-- No setting helps while a transaction holds the xmin horizon back: vacuum cannot
-- remove a row that such a transaction may still see. 012 reports that case.
--
-- Safe to run again: ALTER TABLE ... SET overwrites the same values.

ALTER TABLE product_changes SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
