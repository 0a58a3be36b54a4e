-- Which index the frontend serves from: data, so a migration switches it without a
-- redeploy (docs/index-migration.md).
--
-- At most one row. No row means PINECONE_HOST serves. The row holds a host as the
-- apps compare them (IndexSettings.normal_host: scheme, no trailing slash, lower
-- case); a frontend serves from it only when it is one of its own configured hosts
-- (PINECONE_HOST or PINECONE_NEXT_HOST), so a row can never make an app send its
-- API key anywhere else.
--
-- Only `pelican migrate-index`, run as the administrator, writes it; the frontend's
-- role may only read it (productsearch/roles.py).
--
-- Idempotent: the file may run again over itself.

CREATE TABLE IF NOT EXISTS serving_index (
    -- Always true: the primary key makes a second row impossible.
    one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    host text NOT NULL CHECK (host ~ '^https?://[^/[:space:]]+$' AND host = lower(host)),
    switched_at timestamptz NOT NULL DEFAULT now()
);
