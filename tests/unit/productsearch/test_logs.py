"""productsearch.logs: the two line formats, and LOG_FORMAT chosen, or refused, at start."""

import json
import logging
import subprocess
import sys

import pytest

from productsearch import logs
from productsearch.settings import ConfigError
from tests.conftest import REPO


def record(msg: str = "backfill captured", exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("pelican.backfill", logging.INFO, __file__, 1, msg, (), exc_info)
    rec.__dict__.update(extra)
    return rec


def test_text_lines_carry_the_message_and_the_extra_fields_quoted_where_needed():
    line = logs.TextFormatter().format(record(products=1000, reason="a bad row", ids=[1, 2], empty="",
                                              applied=["001_products.sql", "002_finite_prices.sql"],
                                              errors={"index": "down"}))
    assert line.endswith('info    pelican.backfill: backfill captured  products=1000 reason="a bad row" '
                         'ids=1,2 empty="" applied=001_products.sql,002_finite_prices.sql '
                         'errors="{\\"index\\": \\"down\\"}"')
    assert "\n" not in line


def test_text_lines_end_with_the_traceback():
    try:
        raise RuntimeError("index unreachable")
    except RuntimeError:
        line = logs.TextFormatter().format(record("upsert failed", exc_info=sys.exc_info()))
    first, *rest = line.split("\n")
    assert first.endswith("pelican.backfill: upsert failed")
    assert rest[-1] == "RuntimeError: index unreachable"


def test_json_lines_stay_one_object_with_the_same_fields():
    entry = json.loads(logs.JsonFormatter().format(record(products=1000)))
    assert (entry["level"], entry["logger"], entry["msg"], entry["products"]) == ("info", "pelican.backfill",
                                                                                  "backfill captured", 1000)


@pytest.fixture
def root_handlers():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield root
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.mark.parametrize("value, formatter", [(None, logs.JsonFormatter), ("json", logs.JsonFormatter),
                                               (" Text ", logs.TextFormatter)])
def test_log_format_picks_the_formatter(monkeypatch, root_handlers, value, formatter):
    if value is None:
        monkeypatch.delenv("LOG_FORMAT", raising=False)
    else:
        monkeypatch.setenv("LOG_FORMAT", value)
    logs.configure("pelican")
    assert [type(h.formatter) for h in root_handlers.handlers] == [formatter]


def test_an_unknown_log_format_is_refused_and_leaves_the_handlers_alone(monkeypatch, root_handlers):
    before = root_handlers.handlers[:]
    monkeypatch.setenv("LOG_FORMAT", "yaml")
    with pytest.raises(ConfigError, match="LOG_FORMAT must be one of json, text, got 'yaml'"):
        logs.configure("pelican")
    assert root_handlers.handlers == before


@pytest.mark.parametrize("argv", [["pelican", "migrate"], ["emu", "check"]])
def test_an_app_started_with_an_unknown_log_format_says_so_and_exits_2(argv):
    # Before the app reads anything else: no database, queue or model is needed to fail.
    done = subprocess.run([sys.executable, "-m", *argv], env={"LOG_FORMAT": "yaml", "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 2
    assert f"{argv[0]}: configuration error: LOG_FORMAT must be one of json, text" in done.stderr
    assert "Traceback" not in done.stderr
