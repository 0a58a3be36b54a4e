"""frontend is the user-facing app: hybrid (semantic and BM25 keyword) product search with filters and pagination, a JSON
API for scripts, authenticated edits that flow through pelican and emu, and a panel
that shows how far the index is behind the table."""
