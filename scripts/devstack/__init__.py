"""Local development stack helpers (run with ``PYTHONPATH=scripts``)."""
