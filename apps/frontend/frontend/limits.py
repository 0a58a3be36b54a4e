"""Request bodies are bounded before anything reads them.

Gradio mounts an upload route (/gradio_api/upload) on every app, even one without a
file input, and its other POST routes take bodies of any size: an anonymous client
could fill the task's disk or memory. This ASGI middleware, outermost in the app:

- refuses Gradio's upload route outright (403): this page has no file inputs;
- refuses a body whose Content-Length is over `max_bytes` (413). A body of up to
  DRAIN_MAX_BYTES is read and discarded first: answering before the client has sent it
  makes the server close a socket with unread data, which the kernel answers with a
  reset, and a client still sending sees that reset instead of the 413. A larger
  declared body is refused without reading it (a reset is then the lesser harm than
  spending the bandwidth);
- counts a body sent without a length (chunked) as it streams, and stops at
  `max_bytes`: the app is told the client went away, and the client gets 413.
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse

log = logging.getLogger("frontend.limits")

# Gradio's upload endpoint, under its API prefix and (older versions) at the root.
UPLOAD_PATHS = frozenset({"/gradio_api/upload", "/upload"})
# The most of an oversized body read before refusing it (see the module docstring).
DRAIN_MAX_BYTES = 8 * 1024 * 1024


class RequestBodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):  # noqa: C901 (its receive and send wrappers share one request's byte count)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/")
        if path in UPLOAD_PATHS:
            return await _refuse(send, 403, "this app accepts no file uploads", path)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                return await _refuse(send, 400, "Content-Length is not a number", path)
            if declared > self.max_bytes:
                if declared <= DRAIN_MAX_BYTES:
                    await _drain(receive, DRAIN_MAX_BYTES)
                return await _refuse(send, 413, f"request body is over {self.max_bytes:,} bytes", path)
        seen = 0
        over = False
        started = False

        async def counted_receive():
            nonlocal seen, over
            if over:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def watched_send(message):
            nonlocal started
            if over and not started:
                return  # the app's answer to a body it never got whole; ours follows
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except Exception:
            if not over:
                raise  # the app's own error; only a cut-off body is ours to answer
        if over and not started:
            await _refuse(send, 413, f"request body is over {self.max_bytes:,} bytes", path)


async def _drain(receive, limit: int) -> None:
    """Reads and drops the request body, up to `limit` bytes or the client's disconnect."""
    read = 0
    while read <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return
        read += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _refuse(send, status: int, reason: str, path: str) -> None:
    log.info("request refused", extra={"path": path[:200], "status": status, "reason": reason})
    # Worded as the app's own JSON answers are (starlette's JSONResponse), byte for byte.
    body = JSONResponse({"error": reason}).body
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
