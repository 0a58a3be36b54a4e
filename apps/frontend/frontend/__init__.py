"""frontend is the user-facing app: semantic product search with filters and pagination, a JSON
API for scripts, authenticated edits that flow through pelican and emu, and a panel
that shows how far the index is behind the table."""
