"""Local development stack: real Postgres, moto for SQS/SNS, a Pinecone-compatible
index server, and the apps, all on loopback.

``python -m devstack up|down|status`` (make up / down / status, in __main__) drives
it. Modules: stack (:class:`~devstack.stack.DevStack`, one stack's ports, environment
and processes), up (the `make up` flow on top of stack), processes (background processes,
pid files, logs, readiness), postgres (the PostgreSQL server), reset (the clean slate
between tests and benchmark runs), aws_server (moto with SQS's body checks),
index_server (the Pinecone-compatible server, a package), costs (the added latency
and request counters both servers keep, and the helpers that read and set them) and
waiting (polling helpers). The proxy the failover tests silence lives with the other
test-only switches, in tests/kit.
"""
