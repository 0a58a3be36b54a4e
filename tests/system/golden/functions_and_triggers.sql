-- Written by tests/system/test_schema.py (UPDATE_GOLDEN=1) from a freshly migrated
-- database: what schema/current.sql defines, as the catalog reports it.

CREATE OR REPLACE FUNCTION public.product_next_version(previous bigint)
 RETURNS bigint
 LANGUAGE sql
AS $function$
    -- clock_timestamp(), not now(): now() is frozen for the whole transaction, and a
    -- long transaction must not stamp a version older than one stamped meanwhile.
    SELECT greatest((extract(epoch FROM clock_timestamp()) * 1000000)::bigint, coalesce(previous, 0) + 1)
$function$;

CREATE OR REPLACE FUNCTION public.products_capture_change()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO product_changes (product_id, operation, version)
        VALUES (OLD.id, 'delete', product_next_version(OLD.version));
    ELSE
        INSERT INTO product_changes (product_id, operation, version) VALUES (NEW.id, 'insert', NEW.version);
    END IF;
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE FUNCTION public.products_capture_truncate()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
BEGIN
    INSERT INTO product_changes (product_id, operation, version)
    SELECT id, 'truncate', product_next_version(version) FROM products;
    RETURN NULL;
END;
$function$;

CREATE OR REPLACE FUNCTION public.products_capture_update()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.products_stamp_version()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    NEW.version := product_next_version(NEW.version);
    RETURN NEW;
END;
$function$;

CREATE OR REPLACE FUNCTION public.products_touch_updated_at()
 RETURNS trigger
 LANGUAGE plpgsql
AS $function$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$function$;

CREATE OR REPLACE FUNCTION public.vacuum_horizon(OUT oldest_transaction_age_s double precision, OUT outbox_dead_tuples bigint)
 RETURNS record
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'public', 'pg_temp'
AS $function$
    SELECT
        coalesce((SELECT max(EXTRACT(EPOCH FROM clock_timestamp() - a.xact_start))::float8
                  FROM pg_stat_activity a
                  WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL)
                    AND a.pid <> pg_backend_pid()
                    AND a.backend_type <> 'autovacuum worker'
                    AND a.datname = current_database()), 0),
        coalesce((SELECT s.n_dead_tup FROM pg_stat_user_tables s WHERE s.relid = 'product_changes'::regclass), 0)
$function$;

CREATE TRIGGER products_capture_insert_delete AFTER INSERT OR DELETE ON products FOR EACH ROW EXECUTE FUNCTION products_capture_change();

CREATE TRIGGER products_capture_truncate BEFORE TRUNCATE ON products FOR EACH STATEMENT EXECUTE FUNCTION products_capture_truncate();

CREATE TRIGGER products_capture_update BEFORE UPDATE ON products FOR EACH ROW WHEN (old.id IS DISTINCT FROM new.id OR old.name IS DISTINCT FROM new.name OR old.sku IS DISTINCT FROM new.sku OR old.description IS DISTINCT FROM new.description OR old.price IS DISTINCT FROM new.price OR old.category IS DISTINCT FROM new.category) EXECUTE FUNCTION products_capture_update();

CREATE TRIGGER products_stamp_version BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION products_stamp_version();

CREATE TRIGGER products_touch_updated_at BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION products_touch_updated_at();

