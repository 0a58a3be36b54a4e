"""The FastAPI application of the local index server: routes, the request
middleware (in-flight counting, added latency, fault injection, authentication, the
request-size limit, request accounting, request ids and the access log), the mapping
of errors to Pinecone-shaped bodies, and the local-only ``/_stats`` and ``/_latency``
endpoints (see :mod:`devstack.costs`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from devstack.costs import Meter, check_latency_ms
from devstack.index_server import costs
from devstack.index_server.document_routes import add_document_routes
from devstack.index_server.document_store import DocumentIndexes
from devstack.index_server.faults import FaultInjector, add_fault_routes
from devstack.index_server.handlers import Handlers
from devstack.index_server.limits import MAX_REQUEST_BYTES
from devstack.index_server.protocol import (
    ApiError,
    bad_request,
    body_of,
    error_response,
    json_response,
    request_too_large,
)
from devstack.index_server.store import IndexStore

logger = logging.getLogger("devstack.index_server")

# Local-only endpoints: no API key, no added latency, not counted.
_CONTROL_PATHS = frozenset({"/healthz", "/_faults", "/_stats", "/_latency"})


async def _drain(request: Request) -> None:
    """Read and discard the rest of the request body without buffering it."""
    try:
        async for _chunk in request.stream():
            pass
    except Exception:  # client went away; nothing to answer then
        logger.debug("could not drain request body", exc_info=True)


class RequestPipeline:
    """What every request goes through before its route (pure ASGI, in the app's
    middleware stack): the in-flight count, the added latency, fault injection, the API
    key check and the request-size limit, then the ``x-pinecone-request-id`` header,
    the request's count and body bytes in the :class:`~devstack.costs.Meter`, and one
    access-log line per answer.

    Written as a plain ASGI class, not ``@app.middleware("http")``: Starlette's
    BaseHTTPMiddleware runs each request's app in a task group of its own and streams
    its answer back through a memory channel: about a fifth of the server's CPU per
    search query."""

    def __init__(self, app: ASGIApp, faults: FaultInjector, api_key: str | None, meter: Meter) -> None:
        self.app, self.faults, self.api_key, self.meter = app, faults, api_key, meter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        path = scope["path"]
        request_id = uuid.uuid4().hex[:16].encode()
        status: int | None = None
        received = sent = 0

        async def receive_counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-pinecone-request-id", request_id)]}
            sent += len(message.get("body", b""))
            await send(message)

        request = Request(scope, receive_counted)
        counted = path not in _CONTROL_PATHS
        if counted:
            self.faults.in_flight += 1
        try:
            if counted and self.meter.latency_ms:
                await asyncio.sleep(self.meter.latency_ms / 1000)
            response = await self._refusal(request, path) if counted else None
            if response is None:
                length = request.headers.get("content-length")
                if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
                    response = error_response(400, request_too_large(int(length)).message)
            if response is None:
                await self.app(scope, receive_counted, send_with_id)
            else:
                # Answering before the client has finished sending can reset the connection
                # under it, which the client would see as a network error instead of our status.
                await _drain(request)
                await response(scope, receive, send_with_id)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], path)
            if status is not None:  # the answer has begun; the connection is all that is left to end
                raise
            await error_response(500, "Internal error in local index server")(scope, receive, send_with_id)
        finally:
            if counted:
                self.faults.in_flight -= 1
                self.meter.add(costs.operation(scope["method"], path), requests=1,
                               errors=int(status is None or status >= 400), request_bytes=received, response_bytes=sent)
            logger.info("%s %s %s %.1fms", scope["method"], path, status, (time.perf_counter() - started) * 1000)

    async def _refusal(self, request: Request, path: str) -> Response | None:
        """An injected fault's answer or a failed key check, or None when the request goes on."""
        response = await self.faults.meet(request, path)
        # The fault-exempt header spares a request injected faults, never the key check.
        if response is None and self.api_key:
            supplied = request.headers.get("api-key")
            if supplied is None:
                response = error_response(401, "API key is missing (header Api-Key)")
            elif not hmac.compare_digest(supplied.encode(), self.api_key.encode()):
                response = error_response(401, "Invalid API Key")
        return response


def create_app(store: IndexStore, api_key: str | None = None, latency_ms: float = 0.0) -> FastAPI:  # noqa: C901 (registers the routes as closures over the store)
    """The server's ASGI app over *store*. With *api_key*, every API request must carry
    it in the ``Api-Key`` header (401 otherwise); the local-only endpoints (``/healthz``,
    ``/_faults``, ``/_stats``, ``/_latency``) never need it. Each API request waits
    *latency_ms* milliseconds first (ValueError outside 0..60,000). Document indexes
    (:mod:`~devstack.index_server.documents`) are kept beside *store*'s files. The app
    closes *store* when it shuts down."""
    meter = Meter(costs.INDEX_FIELDS, latency_ms)
    handlers = Handlers(store, meter)
    faults = FaultInjector()
    document_indexes = DocumentIndexes(os.path.dirname(store.db_path))

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        store.close()
        document_indexes.close()

    app = FastAPI(
        title="devstack local index server",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.faults = faults
    app.state.meter = meter
    app.add_middleware(RequestPipeline, faults=faults, api_key=api_key, meter=meter)

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

    add_document_routes(app, document_indexes, meter)
    add_fault_routes(app, faults)

    @app.get("/_stats")
    async def read_stats() -> Response:
        return json_response(meter.snapshot())

    @app.delete("/_stats")
    async def reset_stats() -> Response:
        return json_response(meter.snapshot(reset=True))

    @app.get("/_latency")
    async def read_latency() -> Response:
        return json_response({"latency_ms": meter.latency_ms})

    @app.put("/_latency")
    async def set_latency(request: Request) -> Response:
        try:
            meter.latency_ms = check_latency_ms((await body_of(request)).get("latency_ms"))
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        return json_response({"latency_ms": meter.latency_ms})

    return app

