#!/bin/sh
# docker compose's one-off `setup`, idempotent like `make up` (devstack/up.py
# up), so every `docker compose up` may run it: the schema; the sample catalog only into
# an empty table (its triggers capture each row, so pelican ships them and no backfill
# is needed); rows already there but not waiting in the change log (the volume kept
# them, the index may not have) are re-captured only where the index lacks them or holds
# stale text, which on an empty index is every row.
set -eu
python -m pelican migrate
count() {
  python -c "import os, sys, psycopg; print(psycopg.connect(os.environ['DATABASE_URL']).execute(sys.argv[1]).fetchone()[0])" "$1"
}
if [ "$(count 'SELECT count(*) FROM products')" = 0 ]; then
  python -m pelican load-catalog /app/data/products.csv
elif [ "$(count 'SELECT count(*) FROM products p WHERE NOT EXISTS (SELECT 1 FROM product_changes c WHERE c.product_id = p.id)')" != 0 ]; then
  python -m pelican reconcile --repair
else
  echo "every row is waiting in the change log already; nothing to load or re-capture"
fi
