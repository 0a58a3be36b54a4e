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

In front of those checks, :class:`Metering` adds a set latency to every SQS/SNS
request (``--latency-ms``; ``PUT /_latency`` changes it at run time) and counts the
requests per service and action, with the requests AWS bills for them
(``billed_requests``, see :func:`billed_requests`); ``GET /_stats`` reads the
counters, ``DELETE /_stats`` reads and zeroes them (shapes in :mod:`devstack.costs`,
plus ``services``: the totals of ``sqs`` and ``sns``). Those control paths and moto's
``/moto-api/`` are neither delayed nor counted.

Run: python -m devstack.aws_server --host 127.0.0.1 --port 55000 [--latency-ms MS]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from moto.core.serialize import get_serializer_class
from moto.core.utils import get_service_model
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from moto.sqs.constants import MAXIMUM_MESSAGE_LENGTH
from moto.sqs.exceptions import BatchRequestTooLong, InvalidParameterValue, SQSException
from werkzeug.serving import run_simple
from werkzeug.wrappers import Request, Response

from devstack.costs import MAX_LATENCY_MS, Meter, check_latency_ms

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

    def _send_the_rest(self, environ: dict[str, Any], start_response: Callable[..., Any], params: Any,
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


# Counted per "service.Action" (devstack.costs.Meter): requests, errors (status >= 400),
# HTTP body bytes each way, the message payload bytes, and the requests AWS bills.
SQS_FIELDS = ("requests", "errors", "request_bytes", "response_bytes", "payload_bytes", "billed_requests")
# AWS, Amazon SQS pricing (aws.amazon.com/sqs/pricing): every SQS action is a request,
# and "each 64 KB chunk of a payload is billed as 1 request" (a 256 KB payload: 4).
# Amazon SNS pricing bills each 64 KB chunk of published data as 1 request the same way.
BILLING_CHUNK_BYTES = 64 * 1024
_CREDENTIAL_SERVICE = re.compile(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/")
_UNMETERED = ("/moto-api/", "/_stats", "/_latency")


def _message_bytes(message: dict[str, Any], body_key: str) -> int:
    """A message's payload in bytes: its body plus each attribute's name, type and
    value, which count toward an SQS message's size (AWS docs: message attributes)."""
    def utf8(text: Any) -> int:  # a lone surrogate (which the checks refuse) counts as 3
        return len(str(text).encode("utf-8", "surrogatepass"))

    size = utf8(message.get(body_key, ""))
    for name, attribute in (message.get("MessageAttributes") or {}).items():
        value = attribute.get("StringValue")
        raw = utf8(value) if value is not None else len(base64.b64decode(attribute.get("BinaryValue") or b""))
        size += utf8(name) + utf8(attribute.get("DataType", "")) + raw
    return size


def payload_bytes(action: str, params: Any, answer: Any) -> int:
    """The payload AWS bills an SQS or SNS request by, in bytes: the messages sent
    (SendMessage, SendMessageBatch, SNS Publish), the messages received
    (ReceiveMessage), 0 for any other action. *params* is the parsed request, *answer*
    the parsed response (JSON protocol; the query protocol's XML answers are not read)."""
    if not hasattr(params, "get"):
        return 0
    if action in ("SendMessage", "Publish"):
        return _message_bytes(params, "MessageBody" if action == "SendMessage" else "Message")
    if action == "SendMessageBatch" and isinstance(params.get("Entries"), list):
        return sum(_message_bytes(e, "MessageBody") for e in params["Entries"] if isinstance(e, dict))
    if action == "ReceiveMessage" and isinstance(answer, dict):
        return sum(_message_bytes(m, "Body") for m in answer.get("Messages") or [])
    return 0


def billed_requests(payload: int) -> int:
    """Requests AWS bills for one API call carrying *payload* bytes: one per 64 KiB
    chunk started, at least one (SQS pricing)."""
    return max(1, math.ceil(payload / BILLING_CHUNK_BYTES))


class Metering:
    """WSGI middleware, outermost: adds the set latency to each SQS/SNS request and
    counts it in a :class:`~devstack.costs.Meter`; answers the control paths itself.
    The server is threaded (one thread a request), so the latency's sleep holds up
    only its own request."""

    def __init__(self, app: Callable[..., Iterable[bytes]], latency_ms: float = 0.0):
        self.app = app
        self.meter = Meter(SQS_FIELDS, latency_ms)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ, populate_request=False)
        if request.path in ("/_stats", "/_latency"):
            return self._control(request)(environ, start_response)
        if request.path.startswith(_UNMETERED):
            return self.app(environ, start_response)
        if self.meter.latency_ms:
            time.sleep(self.meter.latency_ms / 1000)
        data = request.get_data()
        environ["wsgi.input"] = io.BytesIO(data)  # the checks and moto read it again
        target = request.headers.get("X-Amz-Target", "")
        if target.startswith(JSON_TARGET_PREFIX):
            service, action = "sqs", target[len(JSON_TARGET_PREFIX):]
            params = _json_or_none(data)
        else:
            scope = _CREDENTIAL_SERVICE.search(request.headers.get("Authorization", ""))
            service, action, params = scope.group(1) if scope else "other", request.form.get("Action", "other"), request.form
        status: list[str] = []

        def start(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(status_line)
            return start_response(status_line, headers, exc_info)

        result = self.app(environ, start)
        try:
            out = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        answer = _json_or_none(out) if action == "ReceiveMessage" else None
        try:
            payload = payload_bytes(action, params, answer)
        except (ValueError, TypeError, AttributeError):  # a malformed request, which moto has answered
            payload = 0
        self.meter.add(f"{service}.{action}", requests=1, errors=int(not status or int(status[0][:3]) >= 400),
                       request_bytes=len(data), response_bytes=len(out), payload_bytes=payload,
                       billed_requests=billed_requests(payload))
        return [out]

    def _control(self, request: Request) -> Response:
        if request.path == "/_latency":
            if request.method == "PUT":
                try:
                    self.meter.latency_ms = check_latency_ms((_json_or_none(request.get_data()) or {}).get("latency_ms"))
                except (ValueError, AttributeError) as exc:
                    return Response(json.dumps({"message": str(exc)}), 400, mimetype="application/json")
            return Response(json.dumps({"latency_ms": self.meter.latency_ms}), mimetype="application/json")
        snapshot = self.meter.snapshot(reset=request.method == "DELETE")
        snapshot["services"] = {
            service: {field: sum(row[field] for op, row in snapshot["operations"].items() if op.startswith(f"{service}."))
                      for field in SQS_FIELDS}
            for service in ("sqs", "sns")}
        return Response(json.dumps(snapshot), mimetype="application/json")


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def build_app(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, latency_ms: float = 0.0) -> Metering:
    """moto's server app (as `moto_server` builds it, /moto-api/ included) behind
    SqsBodyChecks, behind Metering (*latency_ms*: ValueError outside 0..60,000)."""
    return Metering(SqsBodyChecks(DomainDispatcherApplication(create_backend_app), max_message_bytes), latency_ms)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devstack.aws_server",
                                     description="Local SQS/SNS (moto) that refuses the message bodies real SQS refuses.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--max-message-bytes", type=int, default=DEFAULT_MAX_MESSAGE_BYTES,
                        help="each queue's MaximumMessageSize, in UTF-8 bytes (default: %(default)s, the deployed queues')")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="milliseconds added to each SQS/SNS request, as a network to AWS would "
                        "(default 0; PUT /_latency changes it at run time)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.latency_ms <= MAX_LATENCY_MS:
        parser.error(f"--latency-ms must be from 0 to {MAX_LATENCY_MS:.0f}, got {args.latency_ms}")
    # moto addresses itself through this port (as its own server sets it).
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, build_app(args.max_message_bytes, args.latency_ms), threaded=True,
               request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
