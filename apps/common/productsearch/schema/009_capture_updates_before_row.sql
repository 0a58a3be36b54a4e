-- An UPDATE is captured by the BEFORE trigger that stamps its version, not by a
-- second, AFTER trigger: capture costs single-row writers less.
--
-- Before this file an UPDATE that changed an indexed column fired two row triggers:
-- products_stamp_version (BEFORE, 003) gave the row its new version, and
-- products_capture_update (AFTER, 005) wrote the change row. An AFTER row trigger
-- is queued with the statement's tuples and fired when the statement ends, after
-- the row is fetched again; a BEFORE row trigger runs in line, on the row already in
-- hand. Measured side by side (benchmarks.capture, pgbench, 32 clients, single-row
-- price updates; docs/benchmarks.md, "Migration 009"), this file's triggers keep
-- more of the uncaptured rate than 005's in every run.
--
-- Why a BEFORE trigger is safe for capture here:
-- - The change row says which product changed and at which version; it does not
--   carry the row's content. pelican reads each product's current row, with its
--   version, when it ships (pelican/outbox.py). A later BEFORE trigger that cancels
--   the row (RETURN NULL) would leave a change row for an unchanged product: pelican
--   ships the current state again and emu's version check makes the repeat harmless.
-- - The change row is written in the writer's transaction, as before: if the UPDATE
--   fails afterwards (a constraint, a later trigger's error), it is rolled back with it.
-- - A BEFORE ROW trigger of an UPDATE fires on the row version the UPDATE locked,
--   after a concurrent writer's commit has been re-checked (READ COMMITTED), so OLD
--   is the state being replaced, as in the AFTER trigger.
-- INSERT and DELETE stay AFTER triggers (products_capture_insert_delete): a BEFORE
-- INSERT trigger also fires for a row that INSERT ... ON CONFLICT then does not insert,
-- and those writes are not the hot path.
--
-- products_stamp_version now stamps inserts only; products_capture_update() stamps an
-- update's version and captures it, fired only when an indexed column changes (the
-- WHEN clause: the same column list as 003 and 005). An UPDATE that changes no indexed
-- column (a repair's version bump, updated_at) fires no trigger function at all and
-- keeps the version it was given. BEFORE triggers fire in name order:
-- products_capture_update runs before products_touch_updated_at, which touches only
-- updated_at. Hence a rule for any BEFORE UPDATE trigger added to products later: it
-- must not change an indexed column, because products_capture_update has already
-- stamped and captured the row as the statement wrote it (the AFTER trigger of 005
-- saw the final row). tests/system/test_change_capture.py pins the set of BEFORE
-- UPDATE triggers, so adding one means revisiting this.
--
-- `pelican migrate` applies the file in one transaction (productsearch.db.migrate), so
-- writers wait for the triggers to be swapped and no update goes uncaptured meanwhile.
--
-- Every statement is idempotent: the file may run again over itself.

CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := product_next_version(NEW.version);
    RETURN NEW;
END;
$$;

DROP TRIGGER IF EXISTS products_stamp_version ON products;
CREATE TRIGGER products_stamp_version
    BEFORE INSERT ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp_version();

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

DROP TRIGGER IF EXISTS products_capture_update ON products;
CREATE TRIGGER products_capture_update
    BEFORE UPDATE ON products
    FOR EACH ROW
    WHEN (OLD.id IS DISTINCT FROM NEW.id
       OR OLD.name IS DISTINCT FROM NEW.name
       OR OLD.sku IS DISTINCT FROM NEW.sku
       OR OLD.description IS DISTINCT FROM NEW.description
       OR OLD.price IS DISTINCT FROM NEW.price
       OR OLD.category IS DISTINCT FROM NEW.category)
    EXECUTE FUNCTION products_capture_update();

-- INSERT and DELETE only now (products_capture_insert_delete, 005).
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

-- As 004 requires of a file that defines a capture function: run as the owner, with
-- the search path pinned (see 004_capture_as_owner.sql).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION products_capture_change() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_update() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
