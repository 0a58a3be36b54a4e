"""Wiring: one FastAPI app with the JSON endpoints and /healthz, and the Gradio page
mounted at /. Routes registered before the mount win, so /api/* and /healthz are ours."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gradio as gr  # noqa: E402
from gradio.themes import Default  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from frontend.api import ApiError, build_router  # noqa: E402
from frontend.events import UnknownEventGuard  # noqa: E402
from frontend.health import HealthCheck  # noqa: E402
from frontend.limits import RequestBodyLimit  # noqa: E402
from frontend.ui import CSS, build_ui  # noqa: E402

log = logging.getLogger("frontend.app")


def create_app(services) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        health.close()
        services.close()

    app = FastAPI(title="productsearch frontend", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    health = HealthCheck(services)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        if exc.status >= 500 or exc.status in (401, 403, 413):
            log.info("api refused", extra={"path": request.url.path, "status": exc.status, "reason": exc.message})
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        # Our paths answer {"error": ...}; Gradio's keep the shape its page expects.
        if request.url.path.startswith("/api/") or request.url.path == "/healthz":
            return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse({"error": "internal error"}, status_code=500)

    app.include_router(build_router(services, health))
    demo = build_ui(services)
    app = gr.mount_gradio_app(app, demo, path="", css=CSS, footer_links=[], show_error=False,
                              theme=Default(primary_hue="indigo"),
                              max_file_size=services.settings.max_body_bytes)
    app.add_middleware(UnknownEventGuard, blocks=demo)
    # Outermost, so no route (ours or Gradio's) reads a body before its size is known.
    app.add_middleware(RequestBodyLimit, max_bytes=services.settings.max_body_bytes)
    return app
