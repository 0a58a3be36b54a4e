-- The current definition of every function and trigger in the schema, in one place.
--
-- Unlike the numbered files, which run once each, this file runs at the end of every
-- `pelican migrate` (productsearch.migrations.migrate), in the same transaction, after the
-- numbered files not yet applied. So it always meets the newest tables, and a change
-- to a function or trigger is an edit here, not a new numbered file that restates it.
--
-- Every statement replaces in place (CREATE OR REPLACE), so the file may run again
-- over itself. CREATE OR REPLACE TRIGGER (PostgreSQL 14+) takes a SHARE ROW EXCLUSIVE
-- lock on products until the migration commits: writers wait for it, readers do not.
-- What this file no longer defines is not removed by it: a numbered file drops it.
--
-- tests/system/golden/schema.out holds what the catalog reports for these objects
-- (pg_get_functiondef, pg_get_triggerdef) after a migration; a change here changes
-- that file in the same commit.

-- The row version's hybrid clock: microseconds since the Unix epoch, or the previous
-- version + 1, whichever is greater. Real time moves forward across restores even when
-- sequences move back; the + 1 keeps a row's versions strictly increasing even if the
-- server's clock steps back. Today's values (about 1.8e15) stay below 2^53 until the
-- year 2255, so they are exact in Pinecone's metadata, which stores numbers as 64-bit
-- floats. Called by the capture functions below and by pelican's recapture.
CREATE OR REPLACE FUNCTION product_next_version(previous bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    -- clock_timestamp(), not now(): now() is frozen for the whole transaction, and a
    -- long transaction must not stamp a version older than one stamped meanwhile.
    SELECT greatest((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, coalesce(previous, 0) + 1)
$$;

CREATE OR REPLACE FUNCTION products_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

-- Inserts only: an update's version is stamped by products_capture_update(). An insert
-- given a version (a restore) still gets a newer one.
CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := product_next_version(NEW.version);
    RETURN NEW;
END;
$$;

-- Change capture. Every change to a column that reaches the index (its text or its
-- metadata) writes a row to the outbox product_changes in the writer's transaction, so
-- a change commits with the write or not at all. The row says which product changed and
-- at which version, not its content: pelican reads the current row when it ships.
-- No NOTIFY: a transaction with a pending notification serialises commits cluster-wide
-- (PostgreSQL source, src/backend/commands/async.c, PreCommit_Notify); pelican polls.
--
-- The capture functions run as their owner, the administrator who migrates (SECURITY
-- DEFINER), so the app roles need no INSERT on the outbox and cannot write arbitrary
-- rows to it; their search_path is pinned below (PostgreSQL docs, CREATE FUNCTION,
-- "Writing SECURITY DEFINER Functions Safely").

-- AFTER INSERT OR DELETE. A deletion's version outranks the row's last state, so a late
-- upsert of that state is refused; an insert records the version the row now holds.
CREATE OR REPLACE FUNCTION products_capture_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO product_changes (product_id, operation, version)
        VALUES (OLD.id, 'delete', product_next_version(OLD.version));
    ELSE
        INSERT INTO product_changes (product_id, operation, version) VALUES (NEW.id, 'insert', NEW.version);
    END IF;
    RETURN NULL;
END;
$$;

-- BEFORE UPDATE, fired only when an indexed column changes (the trigger's WHEN clause):
-- stamps the update's version and captures it in one trigger call. A BEFORE row
-- trigger runs on the row in hand, where an AFTER one is queued and fetches the row
-- again, so capture costs single-row writers less. A BEFORE UPDATE trigger that sorts
-- after this one must not change an indexed column: this one has already captured the
-- row as the statement wrote it (tests/system/test_change_capture.py pins the set of
-- BEFORE UPDATE triggers).
CREATE OR REPLACE FUNCTION products_capture_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := greatest(NEW.version, product_next_version(OLD.version));
    IF OLD.id <> NEW.id THEN
        -- A primary key change is a delete of the old id, outranking its last state,
        -- and an insert of the new.
        INSERT INTO product_changes (product_id, operation, version)
        VALUES (OLD.id, 'delete', product_next_version(OLD.version)), (NEW.id, 'insert', NEW.version);
    ELSE
        INSERT INTO product_changes (product_id, operation, version) VALUES (NEW.id, 'update', NEW.version);
    END IF;
    RETURN NEW;
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

-- What holds vacuum back, readable by the app roles without pg_monitor (which would
-- also show every session's query text):
--   oldest_transaction_age_s: seconds since the oldest transaction holding a snapshot
--     or a transaction id began, over this database's sessions, the caller's own and
--     autovacuum workers excepted; 0 when there is none;
--   outbox_dead_tuples: the statistics' estimate of product_changes' dead rows.
-- Runs as its owner, who reads all of pg_stat_activity. EXECUTE is revoked from
-- PUBLIC; `pelican grant-roles` grants it to the app roles (productsearch/roles.py),
-- and CREATE OR REPLACE keeps those grants.
CREATE OR REPLACE FUNCTION vacuum_horizon(
    OUT oldest_transaction_age_s float8,
    OUT outbox_dead_tuples bigint)
LANGUAGE sql STABLE AS $$
    SELECT
        coalesce((SELECT max(EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start))::float8
                  FROM pg_stat_activity a
                  WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
                    AND a.pid <> pg_backend_pid()
                    AND a.backend_type <> 'autovacuum worker'
                    AND a.datname = current_database()), 0),
        coalesce((SELECT s.n_dead_tup FROM pg_stat_user_tables s WHERE s.relid = 'product_changes'::regclass), 0)
$$;

REVOKE ALL ON FUNCTION vacuum_horizon() FROM PUBLIC;

-- CREATE OR REPLACE FUNCTION resets SECURITY DEFINER and SET, so they are set here,
-- after every definition, each run. The schema's name is known only when the file
-- runs, hence format(); pg_temp last, so a caller's temporary objects resolve last.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION products_capture_change() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_update() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_truncate() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION vacuum_horizon() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;

-- The triggers on products. BEFORE row triggers fire in name order:
-- products_capture_update, products_stamp_version, products_touch_updated_at; the last
-- two touch only version and updated_at, and fire on different events.

CREATE OR REPLACE TRIGGER products_touch_updated_at
    BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_touch_updated_at();

CREATE OR REPLACE TRIGGER products_stamp_version
    BEFORE INSERT ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp_version();

-- AFTER, not BEFORE: a BEFORE INSERT trigger also fires for a row that INSERT ... ON
-- CONFLICT then does not insert.
CREATE OR REPLACE TRIGGER products_capture_insert_delete
    AFTER INSERT OR DELETE ON products
    FOR EACH ROW EXECUTE FUNCTION products_capture_change();

-- Only columns that reach the index (its text or its metadata) are worth a job. An
-- UPDATE that changes none of them (a repair's version bump, updated_at) fires no
-- capture and keeps the version it was given.
CREATE OR REPLACE TRIGGER products_capture_update
    BEFORE UPDATE ON products
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id
       OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.sku IS DISTINCT FROM NEW.sku
       OR OLD.description IS DISTINCT FROM NEW.description
       OR OLD.price IS DISTINCT FROM NEW.price
       OR OLD.category IS DISTINCT FROM NEW.category)
    EXECUTE FUNCTION products_capture_update();

CREATE OR REPLACE TRIGGER products_capture_truncate
    BEFORE TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION products_capture_truncate();
