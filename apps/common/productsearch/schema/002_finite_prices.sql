-- Prices must be finite numbers.
--
-- numeric accepts 'NaN', and CHECK (price >= 0) lets it through because Postgres
-- sorts NaN above every number. A NaN price cannot be indexed (the vector would have
-- no price to filter on) and cannot be written as JSON. numeric(12,2) itself refuses
-- 'Infinity' and '-Infinity' (a typmod cannot hold an infinite value, PostgreSQL 14+
-- docs: "Arbitrary Precision Numbers"), but the constraint names them as well so the
-- rule stays whole if the column's type is ever widened.
--
-- Rows that already hold a non-finite price, on a database created before this
-- file, are neither deleted nor silently given a price:
--   1. each one's id, sku and original price (as text) is copied to
--      product_price_quarantine, with the price it was given and when;
--   2. its price is set to 0, so the row satisfies the constraint and stays in the
--      catalog; the UPDATE is captured by the triggers like any other, so the index
--      receives the repaired row;
--   3. a WARNING names how many rows were repaired (it reaches the server log).
-- An operator then sets the real prices: the rows to fix are
--   SELECT * FROM product_price_quarantine WHERE resolved_at IS NULL;
--
-- Safe to run again: the repair finds nothing once the constraint is in place, and the
-- constraint is added only when pg_constraint does not hold it yet. Adding it scans
-- the table under an ACCESS EXCLUSIVE lock, once.

CREATE TABLE IF NOT EXISTS product_price_quarantine (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id     bigint        NOT NULL,
    sku            text          NOT NULL,
    original_price text          NOT NULL,
    replaced_with  numeric(12,2) NOT NULL,
    quarantined_at timestamptz   NOT NULL DEFAULT now(),
    resolved_at    timestamptz
);

DO $$
DECLARE
    repaired bigint;
BEGIN
    WITH bad AS (
        SELECT id, sku, price FROM products
        WHERE price IN ('NaN', 'Infinity', '-Infinity')
        FOR UPDATE
    ), recorded AS (
        INSERT INTO product_price_quarantine (product_id, sku, original_price, replaced_with)
        SELECT id, sku, price::text, 0 FROM bad
        RETURNING product_id
    )
    UPDATE products SET price = 0 WHERE id IN (SELECT product_id FROM recorded);
    GET DIAGNOSTICS repaired = ROW_COUNT;
    IF repaired > 0 THEN
        RAISE WARNING '% product(s) held a price that is not a finite number; set to 0 and recorded in product_price_quarantine', repaired
            USING HINT = 'Set the real prices, then mark the rows resolved: UPDATE product_price_quarantine SET resolved_at = now() WHERE ...';
    END IF;

    IF NOT EXISTS (
        SELECT 1 FROM pg_constraint
        WHERE conrelid = 'products'::regclass AND conname = 'products_price_finite'
    ) THEN
        ALTER TABLE products ADD CONSTRAINT products_price_finite
            CHECK (price NOT IN ('NaN', 'Infinity', '-Infinity'));
    END IF;
END;
$$;
