-- Change capture that does not make writers commit one at a time.
--
-- Before this file every capturing transaction called pg_notify. A transaction with a
-- pending notification takes one lock for the whole cluster at commit and holds it
-- until the commit is done (PostgreSQL source, src/backend/commands/async.c,
-- PreCommit_Notify), so capturing writers committed one at a time: 0.21 of the
-- uncaptured single-row update rate at 32 clients (docs/benchmarks.md, "Change capture
-- and writers").
--
-- Now:
-- - Capture is statement-level, reading the statement's transition tables: one INSERT
--   ... SELECT into the outbox per statement instead of one trigger call and one INSERT
--   per row, which serves a bulk UPDATE far better and costs a single-row one about
--   the same. The guarantees of 001 and 003 hold: the change row is written in the same
--   transaction; an UPDATE is captured only for rows whose indexed columns changed; a
--   key change is a deletion of the old id and an insertion of the new; TRUNCATE
--   captures every id; a deletion's version outranks the row's last state, and an
--   insert or update records the version the row now holds (products_stamp_version,
--   still a row trigger, stamps it before the row is written).
-- - NOTIFY only when the outbox was empty, i.e. when pelican may be asleep: a statement
--   whose change rows land behind rows still waiting sends nothing, as pelican is
--   already polling quickly while changes keep arriving (pelican/service.py). The
--   emptiness test looks only at the WAKE_WINDOW ids just below the statement's first
--   change row: pelican ships in id order, so while it lags those rows are waiting, and
--   the index scan stays a few pages long however many shipped (deleted, not yet
--   vacuumed) rows lie further down. A wrong answer costs little either way: a needless
--   notification, or a missed one that pelican's adaptive poll catches.
--
-- Every statement is idempotent: the file may run again over itself.

CREATE OR REPLACE FUNCTION product_changes_wake(first_change bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- WAKE_WINDOW = 256 ids: more than concurrent writers' uncommitted rows (invisible
    -- here) could fill, few enough to stay on one or two index pages.
    IF NOT EXISTS (SELECT 1 FROM product_changes WHERE id < first_change AND id >= first_change - 256) THEN
        PERFORM pg_notify('product_changes', '');
    END IF;
END;
$$;

-- Called only from the capture functions, which run as the owner.
REVOKE EXECUTE ON FUNCTION product_changes_wake(bigint) FROM PUBLIC;

-- One function for the three statement triggers below; each names its transition
-- tables new_rows and/or old_rows. Rows are paired by id, the index's key: an id only
-- in old_rows was deleted (or moved away by a key change), an id only in new_rows was
-- inserted (or moved in), an id in both is an update when an indexed column differs.
-- The column list mirrors products_stamp_version (003).
CREATE OR REPLACE FUNCTION products_capture_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first_change bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        WITH captured AS (
            INSERT INTO product_changes (product_id, operation, version)
            SELECT id, 'insert', version FROM new_rows
            RETURNING id)
        SELECT min(id) INTO first_change FROM captured;
    ELSIF TG_OP = 'DELETE' THEN
        WITH captured AS (
            INSERT INTO product_changes (product_id, operation, version)
            SELECT id, 'delete', product_next_version(version) FROM old_rows
            RETURNING id)
        SELECT min(id) INTO first_change FROM captured;
    ELSE
        WITH captured AS (
            INSERT INTO product_changes (product_id, operation, version)
            SELECT coalesce(n.id, o.id),
                   CASE WHEN n.id IS NULL THEN 'delete' WHEN o.id IS NULL THEN 'insert' ELSE 'update' END,
                   CASE WHEN n.id IS NULL THEN product_next_version(o.version) ELSE n.version END
            FROM old_rows o FULL JOIN new_rows n ON n.id = o.id
            WHERE o.id IS NULL OR n.id IS NULL
               OR (o.name, o.sku, o.description, o.price, o.category)
                  IS DISTINCT FROM (n.name, n.sku, n.description, n.price, n.category)
            RETURNING id)
        SELECT min(id) INTO first_change FROM captured;
    END IF;
    IF first_change IS NOT NULL THEN
        PERFORM product_changes_wake(first_change);
    END IF;
    RETURN NULL;
END;
$$;

-- TRUNCATE fires no row triggers and has no transition tables: capture every id
-- before the rows vanish.
CREATE OR REPLACE FUNCTION products_capture_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first_change bigint;
BEGIN
    WITH captured AS (
        INSERT INTO product_changes (product_id, operation, version)
        SELECT id, 'truncate', product_next_version(version) FROM products
        RETURNING id)
    SELECT min(id) INTO first_change FROM captured;
    IF first_change IS NOT NULL THEN
        PERFORM product_changes_wake(first_change);
    END IF;
    RETURN NULL;
END;
$$;

-- A trigger with transition tables serves one event (PostgreSQL docs, CREATE TRIGGER),
-- so 001's insert-or-delete trigger becomes two.
DROP TRIGGER IF EXISTS products_capture_insert_delete ON products;
DROP TRIGGER IF EXISTS products_capture_insert ON products;
CREATE TRIGGER products_capture_insert
    AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();

DROP TRIGGER IF EXISTS products_capture_update ON products;
CREATE TRIGGER products_capture_update
    AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();

DROP TRIGGER IF EXISTS products_capture_delete ON products;
CREATE TRIGGER products_capture_delete
    AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION products_capture_rows();

-- 001's TRUNCATE trigger stays as it is; its function was replaced above.

-- The row-level capture function of 001/003 no longer has a trigger.
DROP FUNCTION IF EXISTS products_capture_change();

-- As 004 requires of a file that redefines a capture function: run as the owner, with
-- the search path pinned (see 004_capture_as_owner.sql).
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION products_capture_rows() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_truncate() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
