-- Versions that survive restores: the row carries its version.
--
-- Before this file the version of a state was the id of the newest change captured
-- for it. Identity sequences move backwards on a point-in-time restore, on a dump
-- restored into a new database and on a new database under a kept index, and after
-- that every edit looked older than what the index held and was skipped.
--
-- Now each row holds its own version, from a hybrid clock: microseconds since the
-- Unix epoch, or the row's previous version + 1, whichever is greater. Real time
-- moves forward across restores even when sequences move back; the + 1 keeps a row's
-- versions strictly increasing even if the server's clock steps back. Where neither
-- holds (an index written by a database whose clock ran ahead), reconcile's repair
-- raises the row's version above whatever the index holds, so it still converges.
--
-- Today's values are about 1.8e15, below 2^53 (9.007e15, reached in the year 2255),
-- so they are exact in Pinecone's metadata, which stores numbers as 64-bit floats.
--
-- Every statement is idempotent: the file may run again over itself.

CREATE OR REPLACE FUNCTION product_next_version(previous bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $$
    -- clock_timestamp(), not now(): now() is frozen for the whole transaction, and a
    -- long transaction must not stamp a version older than one stamped meanwhile.
    SELECT greatest((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, coalesce(previous, 0) + 1)
$$;

-- Existing rows get 0 (a constant default is a catalog-only change, no table
-- rewrite): their first edit after this migration gets a clock version, far above
-- the change-id versions an existing index holds.
ALTER TABLE products ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 0;

-- Nullable: rows captured before this migration carry none, and pelican falls back
-- to their id, the version they were captured under.
ALTER TABLE product_changes ADD COLUMN IF NOT EXISTS version bigint;

-- The column list mirrors products_capture_update's WHEN clause: a new version exactly
-- when a change is captured. An UPDATE that changes no indexed column (a repair's
-- version bump, updated_at) keeps the version it was given.
CREATE OR REPLACE FUNCTION products_stamp_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := product_next_version(NEW.version);
    ELSIF (OLD.id, OLD.name, OLD.sku, OLD.description, OLD.price, OLD.category)
          IS DISTINCT FROM (NEW.id, NEW.name, NEW.sku, NEW.description, NEW.price, NEW.category) THEN
        NEW.version := greatest(NEW.version, product_next_version(OLD.version));
    END IF;
    RETURN NEW;
END;
$$;

-- BEFORE triggers fire in name order; this one sorts before products_touch_updated_at.
-- They touch different columns, so the order is not load-bearing.
DROP TRIGGER IF EXISTS products_stamp_version ON products;
CREATE TRIGGER products_stamp_version
    BEFORE INSERT OR UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_stamp_version();

-- A deletion's version must outrank the row's last state, so a late upsert of that
-- state is refused; an insert or update records the version the row now holds.
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
    PERFORM pg_notify('product_changes', '');
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION products_capture_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO product_changes (product_id, operation, version)
    SELECT id, 'truncate', product_next_version(version) FROM products;
    PERFORM pg_notify('product_changes', '');
    RETURN NULL;
END;
$$;
