-- The serving_index row may name a host with a path.
--
-- 007 allowed only scheme://authority, the shape of Pinecone's index hosts. A host
-- behind a path prefix (a proxy, or the local index server, which serves each document
-- index under /document-indexes/<name>) could be configured but never switched to.
-- The row still holds a host as IndexSettings.normal_host writes it (lower case, no
-- trailing slash, no white space), and a frontend still follows it only when it is one
-- of its own configured hosts.
--
-- Idempotent: the file may run again over itself.

ALTER TABLE serving_index DROP CONSTRAINT IF EXISTS serving_index_host_check;
ALTER TABLE serving_index ADD CONSTRAINT serving_index_host_check
    CHECK (host ~ '^https?://[^/[:space:]]+(/[^[:space:]]*[^/[:space:]])?$' AND host = lower(host));
