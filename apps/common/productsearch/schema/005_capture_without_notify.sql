-- Change capture that does not make writers commit one at a time: no NOTIFY from
-- writers at all; pelican finds changes by polling.
--
-- Before this file every capturing transaction called pg_notify. A transaction with a
-- pending notification takes one lock for the whole cluster at commit and holds it
-- until the commit is done (PostgreSQL source, src/backend/commands/async.c,
-- PreCommit_Notify), so capturing writers committed one at a time and kept a small
-- fraction of the uncaptured single-row update rate (docs/benchmarks.md, "Change
-- capture and writers", has the side-by-side figures).
--
-- Measured there, side by side: without the NOTIFY, row triggers keep far more of the
-- uncaptured rate. Statement-level capture with transition tables was measured too:
-- better for a bulk UPDATE (one INSERT ... SELECT per statement), no better for
-- single-row writers (worse in one measurement, within the noise in another: a
-- transition table and a join per statement cost about what one row trigger call
-- saves), and those are the writers the goal is about. The earlier version of this file also sent a NOTIFY when a
-- statement's changes landed in an empty outbox; polling alone keeps an isolated
-- change's wait within the idle poll, which meets the freshness goal with nothing
-- added to a writer's transaction.
--
-- So capture stays as 001 and 003 define it (row triggers; the change row is written
-- in the same transaction; an UPDATE is captured only when an indexed column changed;
-- a key change is a deletion of the old id and an insertion of the new; TRUNCATE
-- captures every id; a deletion's version outranks the row's last state), minus the
-- pg_notify. pelican polls adaptively (pelican/service.py): every 0.05 s while
-- changes keep arriving, doubling to PELICAN_POLL_INTERVAL_SECONDS (default 0.5 s)
-- when idle, which bounds how long an isolated change waits. pelican still LISTENs:
-- backfill and recapture NOTIFY once per batch they capture.
--
-- Also removes what an earlier, unreleased version of this file created (statement
-- triggers products_capture_insert/_update/_delete, functions products_capture_rows()
-- and product_changes_wake(bigint)) from databases that ran it.
--
-- Every statement is idempotent: the file may run again over itself.

DROP TRIGGER IF EXISTS products_capture_insert ON products;
DROP TRIGGER IF EXISTS products_capture_delete ON products;

-- As in 003, without the pg_notify.
CREATE OR REPLACE FUNCTION products_capture_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO product_changes (product_id, operation, version)
        VALUES (OLD.id, 'delete', product_next_version(OLD.version));
    ELSIF TG_OP = 'UPDATE' AND OLD.id <> NEW.id THEN
        -- A primary key change is a delete of the old id and an insert of the new.
        INSERT INTO product_changes (product_id, operation, version)
        VALUES (OLD.id, 'delete', product_next_version(OLD.version));
        INSERT INTO product_changes (product_id, operation, version) VALUES (NEW.id, 'insert', NEW.version);
    ELSE
        INSERT INTO product_changes (product_id, operation, version) VALUES (NEW.id, lower(TG_OP), NEW.version);
    END IF;
    RETURN NULL;
END;
$$;

-- TRUNCATE fires no row triggers, so capture every id before the rows vanish.
CREATE OR REPLACE FUNCTION products_capture_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_changes (product_id, operation, version)
    SELECT id, 'truncate', product_next_version(version) FROM products;
    RETURN NULL;
END;
$$;

-- 001's triggers, recreated: the earlier version of this file replaced them.
DROP TRIGGER IF EXISTS products_capture_insert_delete ON products;
CREATE TRIGGER products_capture_insert_delete
    AFTER INSERT OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_capture_change();

-- Only columns that reach the index (its text or its metadata) are worth a job; the
-- list mirrors products_stamp_version (003).
DROP TRIGGER IF EXISTS products_capture_update ON products;
CREATE TRIGGER products_capture_update
    AFTER UPDATE ON products
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id
       OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.sku IS DISTINCT FROM NEW.sku
       OR OLD.description IS DISTINCT FROM NEW.description
       OR OLD.price IS DISTINCT FROM NEW.price
       OR OLD.category IS DISTINCT FROM NEW.category)
    EXECUTE FUNCTION products_capture_change();

DROP TRIGGER IF EXISTS products_capture_truncate ON products;
CREATE TRIGGER products_capture_truncate
    BEFORE TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_capture_truncate();

DROP FUNCTION IF EXISTS products_capture_rows();
DROP FUNCTION IF EXISTS product_changes_wake(bigint);

-- As 004 requires of a file that redefines a capture function: run as the owner, with
-- the search path pinned (see 004_capture_as_owner.sql).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION products_capture_change() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_truncate() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
