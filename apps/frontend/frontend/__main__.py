"""`python -m frontend`: serves the app with uvicorn on FRONTEND_HOST:FRONTEND_PORT.
A missing or malformed setting stops it at start with a message naming the variable."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import uvicorn

from productsearch import logs
from productsearch.settings import ConfigError, EmbeddingSettings

from frontend.config import FrontendSettings, FrontendTuning
from frontend.services import Services


class _PlainUvicornLines(logging.Filter):
    """uvicorn adds an ANSI-coloured copy of some messages; the JSON line needs one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)
        return True


# How much of a request's line and headers h11 buffers before it gives up (its default
# is 16 KiB). Over that, uvicorn answers a bare 400 and closes while the client may still
# be sending, so the client can meet a reset instead of the answer, depending on how
# the bytes happened to arrive. With room for a long hostile URL, the route's own check
# answers it with a JSON 400 every time. (Behind the ALB, which caps a request line at
# 16 KiB, such a request never arrives.)
MAX_REQUEST_HEAD_BYTES = 256 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="frontend", description=__doc__)
    tuning = FrontendTuning.add_options(parser)
    args = parser.parse_args(argv)
    try:
        log = logs.configure("frontend")
    except ConfigError as exc:
        print(f"frontend: configuration error: {exc}", file=sys.stderr)
        return 2
    for handler in logging.getLogger().handlers:
        handler.addFilter(_PlainUvicornLines())
    try:
        # Queries are embedded with their own defaults (one thread, ONNX Runtime on a CPU):
        # see productsearch.settings.QUERY_EMBEDDING_RUNTIME for the measurements.
        settings = FrontendSettings.from_env(os.environ, tuning, args, embedding=EmbeddingSettings.for_queries())
    except ConfigError as exc:
        print(f"frontend: configuration error: {exc}", file=sys.stderr)
        return 2

    from frontend.app import create_app  # heavy: gradio

    services = Services(settings)
    services.load_model_in_background()
    app = create_app(services)
    log.info("frontend starting", extra={"host": settings.host, "port": settings.port,
                                         "editing": settings.editing_enabled, "database": settings.database.redacted(),
                                         "index": settings.index.host, "page_size": settings.page_size})
    # X-Forwarded-For is believed only from trusted proxies (the ALB's subnets): anyone
    # can send the header, and the login throttle counts failures per client address.
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, timeout_graceful_shutdown=20,
                server_header=False, timeout_keep_alive=settings.keep_alive_seconds,
                h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES, **settings.uvicorn_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
