-- The lexical (BM25) statistics that keyword and hybrid search weight terms by
-- (productsearch/lexical.py), fitted from the products table by `pelican
-- refit-lexical`, kept here so that every service reads the same ones: pelican
-- stamps the corpus row into each job (emu has no database access), the frontend
-- reads a query's document frequencies with one indexed lookup per search.
--
-- lexical_corpus has exactly one row. documents = N and average_length = the mean
-- number of terms per product at the last fit (0 before the first: emu then encodes
-- without length normalisation); k1 and b are BM25's constants; fitted_at is NULL
-- until the first refit.
CREATE TABLE IF NOT EXISTS lexical_corpus (
    one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row),
    documents bigint NOT NULL DEFAULT 0 CHECK (documents >= 0),
    average_length double precision NOT NULL DEFAULT 0 CHECK (average_length >= 0 AND average_length < 'Infinity'),
    k1 double precision NOT NULL DEFAULT 1.5 CHECK (k1 > 0 AND k1 < 'Infinity'),
    b double precision NOT NULL DEFAULT 0.75 CHECK (b >= 0 AND b <= 1),
    fitted_at timestamptz
);
INSERT INTO lexical_corpus (one_row) VALUES (true) ON CONFLICT (one_row) DO NOTHING;

-- term_id: lexical.term_id(term), a 32-bit hash (0 .. 2^32 - 1, hence bigint);
-- document_frequency: how many products held the term at the last fit. A term not
-- listed has df 0 (newer than the fit) and gets the highest idf.
CREATE TABLE IF NOT EXISTS lexical_terms (
    term_id bigint PRIMARY KEY CHECK (term_id >= 0 AND term_id < 4294967296),
    document_frequency integer NOT NULL CHECK (document_frequency > 0)
);
