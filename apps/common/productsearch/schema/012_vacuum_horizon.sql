-- What holds vacuum back, readable by the app roles without reading other sessions.
--
-- A transaction left open (a reporting query, a pg_dump, a session idle in
-- transaction) holds the xmin horizon: vacuum keeps every row version that
-- transaction might still see, so the outbox's deleted rows pile up as dead tuples
-- and every claim walks past them. vacuum_horizon() returns the two figures that
-- show it:
--   oldest_transaction_age_s: seconds since the oldest transaction that holds a
--     snapshot or a transaction id (pg_stat_activity.backend_xmin or backend_xid
--     set) began, over this database's sessions (since PostgreSQL 14 a session in
--     another database holds back only the shared catalogs), the caller's own
--     session and autovacuum workers excepted (other vacuums ignore their horizon);
--     0 when there is none;
--   outbox_dead_tuples: pg_stat_user_tables.n_dead_tup of product_changes (the
--     statistics' estimate).
--
-- pg_stat_activity shows another role's xact_start and backend_xmin only to members
-- of pg_read_all_stats. Rather than grant the app roles pg_monitor, which also shows
-- every session's query text, the function runs as its owner (the administrator
-- that migrates: a superuser locally, rds_superuser on RDS, which reads all of
-- pg_stat_activity) and returns these two numbers only. EXECUTE is revoked from
-- PUBLIC; `pelican grant-roles` grants it to the pelican and frontend roles
-- (productsearch/roles.py). The search_path is pinned, as for 004's functions.
--
-- Safe to run again: CREATE OR REPLACE, then the same ALTER, REVOKE.

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

DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION vacuum_horizon() SECURITY DEFINER SET search_path = %I, pg_temp',
                   current_schema());
END;
$$;

REVOKE ALL ON FUNCTION vacuum_horizon() FROM PUBLIC;
