-- SKUs are stored in one Unicode normal form: NFC (productsearch.products.normal_sku).
--
-- The same SKU can arrive precomposed ("é", U+00E9) or decomposed ("e" + U+0301);
-- the two display alike but compare unequal, so without one form they load as two
-- products. The constraint products_sku_nfc refuses any SKU not in NFC, whichever
-- path writes it (the loader, a script, psql). IS NFC NORMALIZED needs a UTF8 server
-- encoding (PostgreSQL docs: "Other String Functions"), which RDS and the local
-- stack use.
--
-- Rows written before this file whose SKU is not in NFC:
--   * if normalising them would make two rows share a SKU, the migration refuses:
--     it raises an error naming every such group (ids and SKUs), and nothing of the
--     run is applied (pelican migrate runs every file in one transaction). Merge or
--     rename those products, then run the migration again;
--   * otherwise each such SKU is rewritten in NFC. The UPDATE is captured by the
--     triggers like any edit, so the index receives the rows with their new SKU, and
--     a WARNING names how many rows changed.
--
-- Safe to run again: once the constraint holds, nothing is out of form, and the
-- constraint is added only when pg_constraint does not hold it yet. Adding it scans
-- the table under an ACCESS EXCLUSIVE lock, once.

DO $$
DECLARE
    collisions text;
    normalised bigint;
BEGIN
    SELECT string_agg(format('%s (ids %s: %s)', nfc, ids, skus), '; ' ORDER BY nfc)
    INTO collisions
    FROM (
        SELECT normalize(sku, NFC) AS nfc,
               string_agg(id::text, ', ' ORDER BY id) AS ids,
               string_agg(format('%L', sku), ', ' ORDER BY id) AS skus
        FROM products
        GROUP BY normalize(sku, NFC)
        HAVING count(*) > 1
    ) AS groups;
    IF collisions IS NOT NULL THEN
        RAISE EXCEPTION 'products whose SKUs differ only in Unicode form would share one SKU in NFC: %', collisions
            USING HINT = 'merge or rename those products (UPDATE products SET sku = ... WHERE id = ...), then run the migration again';
    END IF;

    UPDATE products SET sku = normalize(sku, NFC) WHERE sku IS NOT NFC NORMALIZED;
    GET DIAGNOSTICS normalised = ROW_COUNT;
    IF normalised > 0 THEN
        RAISE WARNING '% product SKU(s) were not in Unicode NFC and were rewritten in it', normalised;
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'products'::regclass AND conname = 'products_sku_nfc'
    ) THEN
        ALTER TABLE products ADD CONSTRAINT products_sku_nfc CHECK (sku IS NFC NORMALIZED);
    END IF;
END;
$$;
