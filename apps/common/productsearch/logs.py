"""Logs on stderr, one record per line: JSON objects for CloudWatch Logs Insights (the
default, and what the services write), or plain text for a person at a terminal
(``LOG_FORMAT=text``; `make up` runs its one-off commands so)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from productsearch.settings import ConfigError

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


class TextFormatter(logging.Formatter):
    """One line a record: UTC time, level, logger, message, then the record's extra
    fields as key=value (a value with spaces quoted), then any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.gmtime(record.created))
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in record.__dict__.items()
                          if k not in _RESERVED and not k.startswith("_"))
        line = f"{stamp} {record.levelname.lower():7} {record.name}: {record.getMessage()}" + (f"  {fields}" if fields else "")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    if isinstance(value, (list, tuple)):
        # A list of names (e.g. the migrations applied) reads best as one comma-separated word.
        text = ",".join(x if isinstance(x, str) else json.dumps(x, default=str, ensure_ascii=False) for x in value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(text, ensure_ascii=False) if not text or any(c.isspace() or c in "\"=" for c in text) else text


FORMATTERS = {"json": JsonFormatter, "text": TextFormatter}


def brief(exc: object, limit: int = 300) -> str:
    """The first `limit` characters of `exc`'s message (or of a reason string), for a
    log field or an error text. Messages from botocore, psycopg and the index client
    can echo whole request bodies; the cap keeps one log line readable and well under
    CloudWatch Logs' 256 KiB event limit. Callers returning an error to a caller use a
    larger limit (500)."""
    return str(exc)[:limit]


def configure(service: str) -> logging.Logger:
    """Sends every logger's records to stderr in LOG_FORMAT (json, the default, or
    text) at LOG_LEVEL (default INFO) and returns the logger named `service`.
    Raises ConfigError for a LOG_FORMAT other than those two, before any handler
    changes: a typo must not switch a service's logs to a format its log queries
    cannot read."""
    name = os.environ.get("LOG_FORMAT", "json").strip().lower() or "json"
    if name not in FORMATTERS:
        raise ConfigError(f"LOG_FORMAT must be one of {', '.join(FORMATTERS)}, got {name!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTERS[name]())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    # Their per-request lines would drown ours and can echo request bodies.
    for noisy in ("botocore", "boto3", "urllib3", "httpx", "httpcore", "pinecone", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return logging.getLogger(service)
