"""The HTTP routes of document indexes (:mod:`~devstack.index_server.document_control`,
:mod:`~devstack.index_server.documents`):
Pinecone's control plane for indexes (``/indexes``) and each document index's data
plane under its host path ``/document-indexes/{name}``. Errors of the control plane
take Pinecone's control-plane shape ``{"error": {"code", "message"}, "status"}``;
the data plane's take the data-plane shape the legacy routes use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from devstack.costs import Meter
from devstack.index_server.document_control import HOST_PREFIX, ControlPlane, ControlPlaneError
from devstack.index_server.document_store import DocumentIndexes
from devstack.index_server.documents import DocumentHandlers, namespace_segment
from devstack.index_server.protocol import ApiError, body_of, json_response

_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND",
          409: "ALREADY_EXISTS"}


def control_plane_error(exc: ApiError) -> Response:
    """*exc* in the control plane's error shape."""
    code = exc.code if isinstance(exc, ControlPlaneError) else _CODES.get(exc.status, "UNKNOWN")
    body = orjson.dumps({"error": {"code": code, "message": exc.message}, "status": exc.status})
    return Response(body, status_code=exc.status, media_type="application/json")


def add_document_routes(app: FastAPI, indexes: DocumentIndexes, meter: Meter) -> None:
    """Register the control-plane and document data-plane routes on *app*."""
    control = ControlPlane(indexes)
    handlers = DocumentHandlers(indexes, meter)

    async def control_call(fn: Callable[[], Any], status: int = 200) -> Response:
        try:
            result = await run_in_threadpool(fn)
        except ApiError as exc:
            return control_plane_error(exc)
        return json_response(result, status) if result is not None else Response(status_code=status)

    @app.post("/indexes")
    async def create_index(request: Request) -> Response:
        try:
            body = await body_of(request)
        except ApiError as exc:
            return control_plane_error(exc)
        return await control_call(lambda: control.create(body, str(request.base_url)), 201)

    @app.get("/indexes")
    async def list_indexes(request: Request) -> Response:
        return await control_call(lambda: control.list(str(request.base_url)))

    @app.get("/indexes/{name}")
    async def describe_index(name: str, request: Request) -> Response:
        return await control_call(lambda: control.describe(name, str(request.base_url)))

    @app.patch("/indexes/{name}")
    async def configure_index(name: str, request: Request) -> Response:
        try:
            body = await body_of(request)
        except ApiError as exc:
            return control_plane_error(exc)
        return await control_call(lambda: control.configure(name, body, str(request.base_url)))

    @app.delete("/indexes/{name}")
    async def delete_index(name: str) -> Response:
        return await control_call(lambda: control.delete(name), 202)

    operations = {
        "upsert": handlers.upsert, "search": handlers.search, "fetch": handlers.fetch,
        "delete": handlers.delete, "update": handlers.update, "list": handlers.list,
    }

    @app.post(HOST_PREFIX + "/{index}/namespaces/{namespace}/documents/{operation}")
    async def documents(index: str, namespace: str, operation: str, request: Request) -> Response:
        handler = operations.get(operation)
        if handler is None:
            raise ApiError(404, f"Unknown documents operation '{operation}'")
        ns = namespace_segment(namespace)
        body = await body_of(request)
        return json_response(await run_in_threadpool(handler, index, ns, body))

    @app.get(HOST_PREFIX + "/{index}/describe_index_stats")
    @app.post(HOST_PREFIX + "/{index}/describe_index_stats")
    async def stats(index: str) -> Response:
        return json_response(await run_in_threadpool(handlers.stats, index))

    @app.get(HOST_PREFIX + "/{index}/namespaces")
    async def list_namespaces(index: str) -> Response:
        return json_response(await run_in_threadpool(handlers.list_namespaces, index))

    @app.delete(HOST_PREFIX + "/{index}/namespaces/{namespace}")
    async def delete_namespace(index: str, namespace: str) -> Response:
        ns = namespace_segment(namespace)
        return json_response(await run_in_threadpool(handlers.delete_namespace, index, ns))
