"""Refuses a call to a Gradio event that does not exist before Gradio sees it.

Gradio looks an event up by the fn_index in the body (or the api_name in the path)
without checking it: an unknown one fails inside its route as a 500 with a traceback.
This middleware answers those calls with a 404 naming the problem; calls to events
that exist pass through untouched, body included."""

from __future__ import annotations

import json
import re
from typing import Any

# The routes that start an event: run and call name it in the path (or "predict" with a
# fn_index), the queue's join by fn_index alone.
EVENT_PATH = re.compile(r"^/gradio_api/(?:(?:run|call(?:/v2)?)/([^/]+)|queue/join)/?$")


class UnknownEventGuard:
    """ASGI middleware: `blocks` is the mounted gr.Blocks, whose fns are the events."""

    def __init__(self, app, blocks):
        self.app, self.blocks = app, blocks

    async def __call__(self, scope, receive, send):
        match = EVENT_PATH.match(scope.get("path", "")) if scope["type"] == "http" else None
        if match is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        problem = self._problem(match.group(1), body)
        if problem is not None:
            payload = json.dumps({"error": problem}).encode()
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
            await send({"type": "http.response.body", "body": payload})
            return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _problem(self, api_name: str | None, body: bytes) -> str | None:
        """Why the call names no event, or None (a body Gradio cannot parse is Gradio's 422)."""
        try:
            parsed: Any = json.loads(body)
        except (ValueError, RecursionError):
            return None
        fn_index = parsed.get("fn_index") if isinstance(parsed, dict) else None
        fns = self.blocks.fns
        if fn_index is not None:
            if not isinstance(fn_index, int) or isinstance(fn_index, bool):
                return None
            fn = fns.get(fn_index)
            if fn is None:
                return f"no such event: fn_index {fn_index}"
        elif api_name is None:
            return "no such event: the queue needs a fn_index"
        else:
            fn = next((f for f in fns.values() if f.api_name == api_name), None)
            if fn is None:
                return f"no such event: {api_name[:60]}"
        if fn.fn is None:  # the event runs in the browser only (its js)
            return f"no such event on the server: fn_index {fn_index}" if fn_index is not None else \
                f"no such event on the server: {api_name[:60]}"
        return None
