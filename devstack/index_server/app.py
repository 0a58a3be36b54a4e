"""The FastAPI application of the local index server: routes, the request
middleware (in-flight counting, fault injection, authentication, the request-size
limit, request ids and the access log) and the mapping of errors to
Pinecone-shaped bodies.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from devstack.index_server.faults import FaultInjector, add_fault_routes
from devstack.index_server.handlers import Handlers
from devstack.index_server.limits import MAX_REQUEST_BYTES
from devstack.index_server.protocol import ApiError, body_of, error_response, json_response, request_too_large
from devstack.index_server.store import IndexStore

logger = logging.getLogger("devstack.index_server")

_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/_faults"})


async def _drain(request: Request) -> None:
    """Read and discard the rest of the request body without buffering it."""
    try:
        async for _chunk in request.stream():
            pass
    except Exception:  # client went away; nothing to answer then
        logger.debug("could not drain request body", exc_info=True)


def create_app(store: IndexStore, api_key: str | None = None) -> FastAPI:
    """The server's ASGI app over *store*. With *api_key*, every API request must carry
    it in the ``Api-Key`` header (401 otherwise); ``/healthz`` and ``/_faults`` never
    need it. The app closes *store* when it shuts down."""
    handlers = Handlers(store)
    faults = FaultInjector()

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()

    app = FastAPI(
        title="devstack local index server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.faults = faults

    @app.middleware("http")
    async def pipeline(request: Request, call_next):
        started = time.perf_counter()
        path = request.url.path
        response: Response | None = None
        counted = path not in _UNAUTHENTICATED_PATHS
        if counted:
            faults.in_flight += 1
        try:
            if counted:
                response = await faults.meet(request, path)
            # The fault-exempt header spares a request injected faults, never the key check.
            if counted and response is None and api_key:
                supplied = request.headers.get("api-key")
                if supplied is None:
                    response = error_response(401, "API key is missing (header Api-Key)")
                elif not hmac.compare_digest(supplied.encode(), api_key.encode()):
                    response = error_response(401, "Invalid API Key")
            if response is None:
                length = request.headers.get("content-length")
                if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
                    response = error_response(400, request_too_large(int(length)).message)
            if response is None:
                response = await call_next(request)
            else:
                # Answering before the client has finished sending can reset the connection
                # under it, which the client would see as a network error instead of our status.
                await _drain(request)
        except Exception:  # pragma: no cover - safety net
            logger.exception("unhandled error on %s %s", request.method, path)
            response = error_response(500, "Internal error in local index server")
        finally:
            if counted:
                faults.in_flight -= 1
        response.headers["x-pinecone-request-id"] = uuid.uuid4().hex[:16]
        elapsed_ms = (time.perf_counter() - started) * 1000
        logger.info("%s %s %d %.1fms", request.method, path, response.status_code, elapsed_ms)
        return response

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, f"Internal error in local index server: {type(exc).__name__}")

    @app.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "dimension": store.dimension, "metric": store.metric})

    def post_json(path: str, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        """A POST route whose JSON body goes to a handler, run off the event loop."""
        async def endpoint(request: Request) -> Response:
            body = await body_of(request)
            return json_response(await run_in_threadpool(handler, body))

        app.add_api_route(path, endpoint, methods=["POST"])

    post_json("/vectors/upsert", handlers.upsert)
    post_json("/query", handlers.query)
    post_json("/vectors/fetch_by_metadata", handlers.fetch_by_metadata)
    post_json("/vectors/delete", handlers.delete)
    post_json("/vectors/update", handlers.update)
    post_json("/describe_index_stats", handlers.stats)

    @app.get("/vectors/fetch")
    async def fetch(request: Request) -> Response:
        ids = request.query_params.getlist("ids")
        namespace = request.query_params.get("namespace")
        return json_response(await run_in_threadpool(handlers.fetch, ids, namespace))

    @app.get("/vectors/list")
    async def list_ids(request: Request) -> Response:
        params = dict(request.query_params)
        return json_response(await run_in_threadpool(handlers.list_ids, params))

    @app.get("/describe_index_stats")
    async def stats_get() -> Response:
        return json_response(await run_in_threadpool(handlers.stats, {}))

    @app.get("/namespaces")
    async def list_namespaces(request: Request) -> Response:
        params = dict(request.query_params)
        return json_response(await run_in_threadpool(handlers.list_namespaces, params))

    @app.get("/namespaces/{name:path}")
    async def describe_namespace(name: str) -> Response:
        return json_response(await run_in_threadpool(handlers.describe_namespace, name))

    @app.delete("/namespaces/{name:path}")
    async def delete_namespace(name: str) -> Response:
        return json_response(await run_in_threadpool(handlers.delete_namespace, name))

    add_fault_routes(app, faults)

    return app

