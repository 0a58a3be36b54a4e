"""moto's SQS/SNS server for the local stack, made to refuse the SQS message bodies
that real SQS refuses and moto accepts, so a test meets the refusal here rather
than in production:

- a body holding a character outside SQS's set (AWS docs: SendMessage, MessageBody:
  #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF) is refused
  with InvalidMessageContents;
- a body over the queue's MaximumMessageSize, counted in UTF-8 bytes, is refused
  with InvalidParameterValue. moto's own check counts characters against a 1 MiB
  default; the deployed queues keep Pulumi's default of 262,144 bytes
  (infra/messaging.py sets none), and so does this server unless told otherwise;
- a SendMessageBatch whose bodies add up to over 1 MiB in UTF-8 bytes is refused
  with BatchRequestTooLong (AWS docs: SendMessageBatch).

SendMessage is refused whole (HTTP 400). In SendMessageBatch only the offending
entries fail, listed under Failed with SenderFault true, and the others are sent, as
SQS does (LocalStack's test_batch_send_with_invalid_char_should_succeed, validated
against AWS). That holds for the AWS JSON protocol, which boto3 uses; a query-protocol
batch with an offending entry is refused whole, stricter than SQS but never laxer.
Errors are written by moto's own serializer, so boto3 raises the ClientError (or
reports the Failed entry) with the code SQS would give. SNS requests pass unchecked:
SNS documents no such character set for Publish.

Run: python -m devstack.aws_server --host 127.0.0.1 --port 55000
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.constants import MAXIMUM_MESSAGE_LENGTH
from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, SQSException
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

# Kept apart from productsearch.jobs on purpose: this server stands in for AWS and
# must not share the code whose output it checks.
REFUSED_CHARACTER = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
ALLOWED_SET = "#x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF"
# Pulumi's aws.sqs.Queue default for maxMessageSize, which the deployed queues keep.
DEFAULT_MAX_MESSAGE_BYTES = 262_144
JSON_TARGET_PREFIX = "AmazonSQS."
CHECKED_ACTIONS = ("SendMessage", "SendMessageBatch")


class InvalidMessageContents(SQSException):
    """SQS's error for a body with a character outside its set."""

    def __init__(self, message: str):
        super().__init__("InvalidMessageContents", message)


def body_problem(body: str, max_bytes: int) -> SQSException | None:
    """Why SQS would refuse `body` as a message body, or None when it would take it.

    `max_bytes` is the queue's MaximumMessageSize, in UTF-8 bytes."""
    bad = REFUSED_CHARACTER.search(body)
    if bad:
        return InvalidMessageContents(
            f"Invalid character U+{ord(bad.group()):04X} at position {bad.start()} of the message body. "
            f"Valid characters are {ALLOWED_SET}."
        )
    size = len(body.encode("utf-8"))
    if size > max_bytes:
        return InvalidParameterValue(
            f"One or more parameters are invalid. Reason: Message must be shorter than {max_bytes} bytes."
        )
    return None


def _error_entry(entry_id: str, problem: SQSException) -> dict[str, Any]:
    return {"Id": entry_id, "SenderFault": True, "Code": problem.code, "Message": problem.message}


class SqsBodyChecks:
    """WSGI middleware in front of moto's server app that applies the checks in this
    module's docstring to SendMessage and SendMessageBatch; every other request, and
    every send that passes, reaches moto untouched."""

    def __init__(self, app: Callable[..., Iterable[bytes]], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES):
        self.app = app
        self.max_message_bytes = max_message_bytes
        self.service_model = get_service_model("sqs")

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ, populate_request=False)
        target = request.headers.get("X-Amz-Target", "")
        is_form = request.mimetype == "application/x-www-form-urlencoded"
        if not (target.startswith(JSON_TARGET_PREFIX) or is_form):
            return self.app(environ, start_response)
        data = request.get_data()
        environ["wsgi.input"] = io.BytesIO(data)  # moto reads the body again
        protocol = "query" if is_form else "json"
        action = request.form.get("Action", "") if is_form else target[len(JSON_TARGET_PREFIX):]
        if action not in CHECKED_ACTIONS:
            return self.app(environ, start_response)
        if is_form:
            params: Any = request.form
        else:
            try:
                params = json.loads(data)
            except ValueError:
                params = None
        entries = self._entries(action, protocol, params) if params is not None else None
        if entries is None:  # malformed: moto reports it
            return self.app(environ, start_response)
        if action == "SendMessageBatch":
            total = sum(len(body.encode("utf-8")) for _, body in entries)
            if total > MAXIMUM_MESSAGE_LENGTH:
                return self._answer(environ, start_response, action, protocol, BatchRequestTooLong(total))
        problems = {entry_id: p for entry_id, body in entries if (p := body_problem(body, self.max_message_bytes))}
        if not problems:
            return self.app(environ, start_response)
        if action == "SendMessage" or protocol == "query":
            return self._answer(environ, start_response, action, protocol, next(iter(problems.values())))
        return self._send_the_rest(environ, start_response, params, problems)

    @staticmethod
    def _entries(action: str, protocol: str, params: Any) -> list[tuple[str, str]] | None:
        """(entry id, body) for each message of the request; None when the request is
        malformed in a way moto itself reports."""
        if not hasattr(params, "get"):
            return None
        if action == "SendMessage":
            body = params.get("MessageBody")
            return [("", body)] if isinstance(body, str) else None
        if protocol == "query":
            prefix = "SendMessageBatchRequestEntry."
            ids = {k[len(prefix):-len(".Id")]: v for k, v in params.items() if k.startswith(prefix) and k.endswith(".Id")}
            return [(entry_id, params.get(f"{prefix}{n}.MessageBody", "")) for n, entry_id in ids.items()]
        raw = params.get("Entries")
        if not isinstance(raw, list) or not all(isinstance(e, dict) and isinstance(e.get("MessageBody"), str) for e in raw):
            return None
        return [(str(e.get("Id")), e["MessageBody"]) for e in raw]

    def _send_the_rest(self, environ: dict[str, Any], start_response: Callable[..., Any], params: dict[str, Any],
                       problems: dict[str, SQSException]) -> Iterable[bytes]:
        failed = [_error_entry(entry_id, problem) for entry_id, problem in problems.items()]
        rest = [e for e in params["Entries"] if str(e.get("Id")) not in problems]
        if not rest:
            return self._answer(environ, start_response, "SendMessageBatch", "json", {"Successful": [], "Failed": failed})
        data = json.dumps({**params, "Entries": rest}).encode()
        environ["wsgi.input"] = io.BytesIO(data)
        environ["CONTENT_LENGTH"] = str(len(data))
        moto_response = Response.from_app(self.app, environ)
        if moto_response.status_code != 200:
            return moto_response(environ, start_response)  # a batch-level error: SQS sends none either
        result = json.loads(moto_response.get_data())
        result["Failed"] = result.get("Failed", []) + failed
        return self._answer(environ, start_response, "SendMessageBatch", "json", result)

    def _answer(self, environ: dict[str, Any], start_response: Callable[..., Any], action: str, protocol: str,
                result: Any) -> Iterable[bytes]:
        """`result` (an SQSException or a result dict) in `protocol`'s shape, as moto writes it."""
        serializer = get_serializer_class("sqs", protocol)(operation_model=self.service_model.operation_model(action))
        out = serializer.serialize(result)
        response = Response(out["body"], status=out["status_code"], headers=out["headers"])
        return response(environ, start_response)


def build_app(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> SqsBodyChecks:
    """moto's server app (as `moto_server` builds it, /moto-api/ included) behind
    SqsBodyChecks."""
    return SqsBodyChecks(DomainDispatcherApplication(create_backend_app), max_message_bytes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack.aws_server",
                                     description="Local SQS/SNS (moto) that refuses the message bodies real SQS refuses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="each queue's MaximumMessageSize, in UTF-8 bytes (default: %(default)s, the deployed queues')")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # moto addresses itself through this port (as its own server sets it).
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, build_app(args.max_message_bytes), threaded=True,
               request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
