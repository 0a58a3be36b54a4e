"""JSON endpoints for scripts, benchmarks and tests (no browser needed), and /healthz.

Every refusal is a 4xx with {"error": "<reason>"}; a part that does not answer is a
503 with the same shape (and Retry-After when the index said how long to wait).
Bodies are parsed here rather than by FastAPI's models so that each bad input gets
its own plain reason.

Edits are conditional requests (RFC 9110, 13.1.1): GET /api/products/{id} answers
with the row's ETag, and PUT must send it back in If-Match. A stale tag is a 412
with the current state and its ETag; a PUT without If-Match is a 428 (RFC 6585, 3),
so no client can overwrite another editor's save by leaving the header out."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from productsearch.documents import UnindexableProduct, is_ascii_digits
from productsearch.index import retry_after_s
from productsearch.logs import brief
from productsearch.search import DEFAULT_MODE, InvalidSearch, SearchFilters, validate_mode, validate_query, validate_top_k

from frontend import editing
from frontend.config import DEFAULT_MAX_BODY_BYTES
from frontend.query_embedding import QueryEmbeddingTimeout
from frontend.searching import timed_search
from frontend.services import NotReady

log = logging.getLogger("frontend.api")

MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES  # frontend.limits enforces it for every route first
SEARCH_FIELDS = {"query", "top_k", "filters", "mode", "explain"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def unavailable(exc: BaseException) -> ApiError:
    if isinstance(exc, NotReady):
        return ApiError(503, f"not ready: {exc}")
    if isinstance(exc, QueryEmbeddingTimeout):
        log.error("query embedding overloaded", extra={"error": brief(exc)})
        return ApiError(503, "the query embedding is overloaded; try again shortly")
    module = type(exc).__module__ or ""
    part = "the database" if module.startswith(("psycopg", "psycopg_pool")) else "the index"
    log.error("dependency failed", extra={"part": part, "error_type": type(exc).__name__, "error": brief(exc)})
    wait_s = retry_after_s(exc)
    if wait_s is not None:
        # The index asked its caller to wait (a 429's Retry-After); the user hears the same.
        return ApiError(503, f"{part} is busy; try again in {wait_s} s", {"Retry-After": str(wait_s)})
    return ApiError(503, f"{part} did not answer; try again shortly")


async def read_json(request: Request) -> Any:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise ApiError(413, f"request body is over {MAX_BODY_BYTES:,} bytes")
    if not body.strip():
        raise ApiError(400, "request body is empty; send a JSON object")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {exc.start})") from None

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(text, parse_constant=no_constants)
    except ValueError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # nesting deeper than the parser's stack (about 1,000 levels), in a small body
        raise ApiError(400, "request body is not valid JSON: nested too deeply") from None


def basic_auth(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


CHALLENGE = {"WWW-Authenticate": 'Basic realm="productsearch editing", charset="UTF-8"'}


def build_router(services, health) -> APIRouter:  # noqa: C901 (split into one function per route next)
    router = APIRouter()
    settings = services.settings

    @router.get("/healthz")
    async def healthz():
        # Answered on the event loop from the latest readings (frontend.health): never
        # queued behind user work on the thread pool, whatever the index or database do.
        health.start()
        waited_until = time.monotonic() + health.first_reading_timeout_s
        result = health.check()
        while result is None and time.monotonic() < waited_until:
            await asyncio.sleep(0.02)
            result = health.check()
        if result is None:
            ok, parts = False, {"model": services.model_state[1], "database": "not checked yet"}
        else:
            ok, parts = result
        return JSONResponse({"status": "ok" if ok else "unavailable", **parts}, status_code=200 if ok else 503)

    @router.post("/api/search")
    async def api_search(request: Request):
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ApiError(400, 'request body must be a JSON object like {"query": "...", "top_k": 10}')
        unknown = sorted(set(body) - SEARCH_FIELDS)
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)} (allowed: query, top_k, filters, mode, explain)")
        if "query" not in body:
            raise ApiError(400, "query is missing")
        try:
            query = validate_query(body["query"])
            top_k = validate_top_k(body.get("top_k", 10))
            filters = SearchFilters.parse(body.get("filters"))
            mode = validate_mode(body.get("mode", DEFAULT_MODE))
        except InvalidSearch as exc:
            raise ApiError(400, str(exc)) from None
        explain = body.get("explain", False)
        if not isinstance(explain, bool):
            raise ApiError(400, "explain must be true or false")
        try:
            results = await run_in_threadpool(lambda: timed_search(services.search, query, top_k, filters, "api", mode,
                                                                   explain=explain))
        except InvalidSearch as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        # A JSONResponse as is: returning the dict would make FastAPI walk it again
        # (jsonable_encoder), about half a millisecond per search for values that are
        # already JSON (SearchResult.to_json).
        return JSONResponse({"results": [r.to_json() for r in results]})

    def product_id(raw: str) -> int:
        try:
            return editing.validate_product_id(raw)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None

    @router.get("/api/products/{raw_id}")
    async def get_product(raw_id: str):
        pid = product_id(raw_id)
        try:
            row = await run_in_threadpool(editing.get_product, services.pool, pid)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return JSONResponse(editing.product_json(row), headers={"ETag": editing.etag(row["version"])})

    def conflict(exc: editing.Conflict) -> JSONResponse:
        current = exc.current
        return JSONResponse({"error": str(exc), "current": editing.product_json(current)}, status_code=412,
                            headers={"ETag": editing.etag(current["version"])})

    @router.put("/api/products/{raw_id}")
    async def put_product(raw_id: str, request: Request):
        # Refuse before reading anything else: an unauthenticated caller learns nothing.
        if not settings.editing_enabled:
            raise ApiError(403, "editing is disabled: EDITOR_USERNAME and EDITOR_PASSWORD are not configured")
        given = basic_auth(request)
        if given is None:
            raise ApiError(401, "authentication required (HTTP Basic with the editor credentials)", CHALLENGE)
        try:
            editor = editing.authenticate(settings.editor, *given, throttle=services.login_throttle,
                                          client=request.client.host if request.client else None)
        except editing.Throttled as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None
        except editing.Unauthorized:
            raise ApiError(401, "wrong username or password", CHALLENGE) from None
        pid = product_id(raw_id)
        body = await read_json(request)
        try:
            changes = editing.validate_changes(body)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        if_match = request.headers.get("if-match")
        if if_match is None:
            raise ApiError(428, f"If-Match is required: send the ETag that GET /api/products/{pid} returned, "
                                'so the edit applies to the state it was made from ("*": to whatever is there)')
        try:
            expected = editing.parse_if_match(if_match)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        try:
            result = await run_in_threadpool(editing.apply_edit, services.pool, pid, changes, editor,
                                              settings.embedding.text_template, expected)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except editing.Conflict as exc:
            return conflict(exc)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        except UnindexableProduct as exc:
            # The stored row cannot be indexed (a NaN price from before migration 002) and the
            # edit leaves that value alone: a row fault the editor can fix, not a failed part.
            raise ApiError(400, f"{exc}; give a valid price in the same edit (nothing was saved)") from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return JSONResponse(result.to_json(), headers={"ETag": editing.etag(result.current_version)})

    @router.get("/api/products/{raw_id}/sync")
    async def product_sync(raw_id: str, version: str | None = None):
        pid = product_id(raw_id)
        wanted = None
        if version is not None:
            if not is_ascii_digits(version) or len(version) > 19:
                raise ApiError(400, f"version must be a non-negative integer, got {version[:40]!r}")
            wanted = int(version)
        try:
            state = await run_in_threadpool(editing.sync_state, services.index, services.pool, pid,
                                              settings.embedding.text_template, wanted)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return state.to_json()

    @router.get("/api/status")
    async def api_status():
        status = await run_in_threadpool(services.status.read)
        return status.to_json()

    catch_all = "/api/{rest:path}"

    @router.api_route(catch_all, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown_api(rest: str, request: Request):
        # A path that exists, asked with a method it does not take, is a 405 with the
        # methods it does take in Allow (RFC 9110, 15.5.6), not a 404. The routes are
        # matched by their own paths: this router is included without a prefix.
        allowed = sorted({method for route in router.routes if isinstance(route, APIRoute) and route.path != catch_all
                          and route.matches(request.scope)[0] is not Match.NONE for method in route.methods or ()})
        if allowed:
            raise ApiError(405, f"{request.method} is not allowed on /api/{rest}; it takes {', '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such endpoint: {request.method} /api/{rest}")

    return router
