-- Change capture runs with the table owner's rights, not the editor's.
--
-- The apps connect as least-privilege roles (productsearch/roles.py, `pelican
-- grant-roles`). The frontend's role may UPDATE a product's name, description and
-- price, and its UPDATE fires products_capture_change, which inserts into
-- product_changes. A trigger function runs with the invoking role's privileges, so
-- without this file the frontend's role would need INSERT on the outbox, and with it
-- it could write any outbox row, e.g. a deletion at a version far in the future that
-- emu would accept and that would then make emu refuse every later state of that
-- product. As SECURITY DEFINER the capture functions insert with their owner's rights
-- (the administrator who ran the migration), and only the rows their fixed bodies
-- write; no app role holds INSERT on product_changes.
--
-- A SECURITY DEFINER function must not resolve names through a search_path its caller
-- controls, so each is pinned to the schema that holds the tables, with pg_temp last
-- (PostgreSQL docs, CREATE FUNCTION, "Writing SECURITY DEFINER Functions Safely").
-- Trigger functions cannot be called directly, only fired by the triggers.
--
-- A later CREATE OR REPLACE FUNCTION of either function resets both attributes: a file
-- that redefines one must end by repeating the ALTER below
-- (tests/system/test_database_roles.py fails otherwise: the frontend's edits are refused).
--
-- Idempotent: ALTER FUNCTION sets the same attributes again.

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION products_capture_change() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
    EXECUTE format('ALTER FUNCTION products_capture_truncate() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;
