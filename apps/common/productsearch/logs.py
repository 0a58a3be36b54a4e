"""Structured JSON logs on stderr, one object per line, for CloudWatch Logs Insights."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def brief(exc: object, limit: int = 300) -> str:
    """The first `limit` characters of `exc`'s message (or of a reason string), for a
    log field or an error text. Messages from botocore, psycopg and the index client
    can echo whole request bodies; the cap keeps one log line readable and well under
    CloudWatch Logs' 256 KiB event limit. Callers returning an error to a caller use a
    larger limit (500)."""
    return str(exc)[:limit]


def configure(service: str) -> logging.Logger:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # Their per-request lines would drown ours and can echo request bodies.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "pinecone", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)
