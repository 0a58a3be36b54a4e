"""JSON endpoints for scripts, benchmarks and tests (no browser needed), and /healthz.

Every refusal is a 4xx with {"error": "<reason>"}; a part that does not answer is a
503 with the same shape (and Retry-After when the index said how long to wait).
Bodies are read here rather than by FastAPI, so that each bad input gets its own
plain reason: a body is a request model (SearchRequest, editing.EditRequest) whose
errors frontend.bodies turns into those reasons.

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
from typing import Any, ClassVar, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ConfigDict, Field, StrictBool, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match

from productsearch.documents import UnindexableProduct
from productsearch.index import retry_after_s
from productsearch.logs import brief
from productsearch.search import DEFAULT_MODE, InvalidSearch, SearchFilters, validate_mode, validate_query, validate_top_k

from frontend import editing
from frontend.bodies import InvalidBody, RequestBody
from frontend.config import DEFAULT_MAX_BODY_BYTES
from frontend.query_embedding import QueryEmbeddingTimeout
from frontend.searching import timed_search
from frontend.services import NotReady

log = logging.getLogger("frontend.api")

MAX_BODY_BYTES = DEFAULT_MAX_BODY_BYTES  # frontend.limits enforces it for every route first


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


class SearchRequest(RequestBody):
    """The body of POST /api/search. Each field is checked by the same function the UI
    uses (productsearch.search), so the API and the page refuse the same values with
    the same reason (frontend.bodies turns pydantic's errors into those reasons)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)  # SearchFilters; extra="forbid" is RequestBody's
    not_an_object: ClassVar[str] = 'request body must be a JSON object like {"query": "...", "top_k": 10}'

    query: str
    top_k: int = Field(default=10, validate_default=True)
    filters: SearchFilters = Field(default=None, validate_default=True)  # pyright: ignore[reportAssignmentType]
    mode: str = Field(default=DEFAULT_MODE, validate_default=True)
    explain: StrictBool = False

    @field_validator("query", mode="before")
    @classmethod
    def _query(cls, value: Any) -> str:
        return validate_query(value)

    @field_validator("top_k", mode="before")
    @classmethod
    def _top_k(cls, value: Any) -> int:
        return validate_top_k(value)

    @field_validator("filters", mode="before")
    @classmethod
    def _filters(cls, value: Any) -> SearchFilters:
        return SearchFilters.parse(value)

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> str:
        return validate_mode(value)


Body = TypeVar("Body", bound=RequestBody)


async def read_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON body as `model`. Raises ApiError: 413 over MAX_BODY_BYTES,
    400 for a body that is not JSON or that the model refuses (frontend.bodies gives
    the reason and its order)."""
    try:
        return model.parse(await read_json(request))
    except InvalidBody as exc:
        raise ApiError(400, str(exc)) from None


def product_id(raw: str) -> int:
    """The product id in a path, as an int. Raises ApiError(400) when it is not one."""
    try:
        return editing.validate_product_id(raw)
    except editing.InvalidEdit as exc:
        raise ApiError(400, str(exc)) from None


def if_match(request: Request, pid: int) -> int | None:
    """The version that the request's If-Match names (None for "*"). Raises ApiError
    428 without the header, 400 for a tag that is not one strong entity tag."""
    header = request.headers.get("if-match")
    if header is None:
        raise ApiError(428, f"If-Match is required: send the ETag that GET /api/products/{pid} returned, "
                            'so the edit applies to the state it was made from ("*": to whatever is there)')
    try:
        return editing.parse_if_match(header)
    except editing.InvalidEdit as exc:
        raise ApiError(400, str(exc)) from None


def conflict(exc: editing.Conflict) -> JSONResponse:
    """The 412 answer to a stale If-Match: the current state and its ETag."""
    current = exc.current
    return JSONResponse({"error": str(exc), "current": editing.product_json(current)}, status_code=412,
                        headers={"ETag": editing.etag(current["version"])})


CATCH_ALL = "/api/{rest:path}"


class Routes:
    """The endpoints, one method per route, over the app's services and health check;
    build_router registers them."""

    def __init__(self, services, health):
        self.services, self.health, self.settings = services, health, services.settings
        self.router = APIRouter()

    async def healthz(self):
        """GET /healthz: {"status": "ok", "model", "database"[, "index"]}, 200 when the
        model is loaded and the database answers, else 503 with "unavailable"."""
        # Answered on the event loop from the latest readings (frontend.health): never
        # queued behind user work on the thread pool, whatever the index or database do.
        health = self.health
        health.start()
        waited_until = time.monotonic() + health.first_reading_timeout_s
        result = health.check()
        while result is None and time.monotonic() < waited_until:
            await asyncio.sleep(0.02)
            result = health.check()
        if result is None:
            ok, parts = False, {"model": self.services.model_state[1], "database": "not checked yet"}
        else:
            ok, parts = result
        return JSONResponse({"status": "ok" if ok else "unavailable", **parts}, status_code=200 if ok else 503)

    async def search(self, request: Request):
        """POST /api/search: {"results": [...]} best first; 400 for a bad body (see
        SearchRequest), 503 when a part does not answer."""
        asked = await read_body(request, SearchRequest)
        try:
            results = await run_in_threadpool(lambda: timed_search(self.services.search, asked.query, asked.top_k,
                                                                   asked.filters, "api", asked.mode,
                                                                   explain=asked.explain))
        except InvalidSearch as exc:
            raise ApiError(400, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        # A JSONResponse as is: returning the dict would make FastAPI walk it again
        # (jsonable_encoder), a noticeable share of a search's CPU for values that are
        # already JSON (SearchResult.to_json).
        return JSONResponse({"results": [r.to_json() for r in results]})

    async def get_product(self, raw_id: str):
        """GET /api/products/{id}: the product as JSON with its ETag; 400 for a bad id, 404."""
        pid = product_id(raw_id)
        try:
            row = await run_in_threadpool(editing.get_product, self.services.pool, pid)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return JSONResponse(editing.product_json(row), headers={"ETag": editing.etag(row["version"])})

    def editor(self, request: Request) -> str:
        """The authenticated editor's name. Raises ApiError 403 (editing disabled), 401
        (no or wrong credentials) or 429 (too many failed logins)."""
        settings = self.settings
        if not settings.editing_enabled:
            raise ApiError(403, "editing is disabled: EDITOR_USERNAME and EDITOR_PASSWORD are not configured")
        given = basic_auth(request)
        if given is None:
            raise ApiError(401, "authentication required (HTTP Basic with the editor credentials)", CHALLENGE)
        try:
            return editing.authenticate(settings.editor, *given, throttle=self.services.login_throttle,
                                        client=request.client.host if request.client else None)
        except editing.Throttled as exc:
            raise ApiError(429, str(exc), {"Retry-After": str(exc.retry_after_s)}) from None
        except editing.Unauthorized:
            raise ApiError(401, "wrong username or password", CHALLENGE) from None

    async def put_product(self, raw_id: str, request: Request):
        """PUT /api/products/{id}: applies the edit when If-Match holds the current ETag
        (the module docstring); 412 with the current state when it does not."""
        # Refuse before reading anything else: an unauthenticated caller learns nothing.
        editor = self.editor(request)
        pid = product_id(raw_id)
        edit = await read_body(request, editing.EditRequest)
        expected = if_match(request, pid)
        try:
            result = await run_in_threadpool(editing.apply_edit, self.services.pool, pid, edit.changes, editor,
                                              self.settings.embedding.text_template, expected)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except editing.Conflict as exc:
            return conflict(exc)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        except UnindexableProduct as exc:
            # The stored row cannot be indexed (a NaN price from before the schema refused it) and the
            # edit leaves that value alone: a row fault the editor can fix, not a failed part.
            raise ApiError(400, f"{exc}; give a valid price in the same edit (nothing was saved)") from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return JSONResponse(result.to_json(), headers={"ETag": editing.etag(result.current_version)})

    async def product_sync(self, raw_id: str, version: str | None = None):
        """GET /api/products/{id}/sync[?version=N]: whether the index holds the row's
        current version (or N)."""
        pid = product_id(raw_id)
        try:
            wanted = None if version is None else editing.validate_version(version)
        except editing.InvalidEdit as exc:
            raise ApiError(400, str(exc)) from None
        try:
            state = await run_in_threadpool(editing.sync_state, self.services.index, self.services.pool, pid,
                                              self.settings.embedding.text_template, wanted)
        except editing.NotFound as exc:
            raise ApiError(404, str(exc)) from None
        except Exception as exc:
            raise unavailable(exc) from exc
        return state.to_json()

    async def status(self):
        """GET /api/status: how far the index is behind the table."""
        status = await run_in_threadpool(self.services.status.read)
        return status.to_json()

    async def unknown_api(self, rest: str, request: Request):
        """Any other /api path: 405 with Allow when the path takes other methods, else 404."""
        # A path that exists, asked with a method it does not take, is a 405 with the
        # methods it does take in Allow (RFC 9110, 15.5.6), not a 404. The routes are
        # matched by their own paths: this router is included without a prefix.
        allowed = sorted({method for route in self.router.routes
                          if isinstance(route, APIRoute) and route.path != CATCH_ALL
                          and route.matches(request.scope)[0] is not Match.NONE for method in route.methods or ()})
        if allowed:
            raise ApiError(405, f"{request.method} is not allowed on /api/{rest}; it takes {', '.join(allowed)}",
                           {"Allow": ", ".join(allowed)})
        raise ApiError(404, f"no such endpoint: {request.method} /api/{rest}")


def build_router(services, health) -> APIRouter:
    """The API's router: each route of Routes at its path; the catch-all comes last so
    that it answers only what no other route takes."""
    routes = Routes(services, health)
    router = routes.router
    router.add_api_route("/healthz", routes.healthz, methods=["GET"])
    router.add_api_route("/api/search", routes.search, methods=["POST"])
    router.add_api_route("/api/products/{raw_id}", routes.get_product, methods=["GET"])
    router.add_api_route("/api/products/{raw_id}", routes.put_product, methods=["PUT"])
    router.add_api_route("/api/products/{raw_id}/sync", routes.product_sync, methods=["GET"])
    router.add_api_route("/api/status", routes.status, methods=["GET"])
    router.add_api_route(CATCH_ALL, routes.unknown_api, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    return router
