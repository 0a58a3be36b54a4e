"""`make status`'s sync lines (DevStack.sync_lines) when there is no frontend to ask,
or one that does not answer. With a running frontend: tests/system/test_frontend_api.py."""

from __future__ import annotations

import sys

from devstack.__main__ import main
from devstack.stack import DevStack, free_port


def test_no_frontend_started_means_no_sync_lines(tmp_path):
    assert DevStack(root=tmp_path).sync_lines() == []


def test_a_frontend_that_does_not_answer_is_named_with_its_address(tmp_path):
    port = free_port()  # nothing listens there
    stack = DevStack(root=tmp_path, frontend_port=port)
    proc = stack.spawn("frontend", [sys.executable, "-c", "import time; time.sleep(60)"], env={})
    try:
        [line] = stack.sync_lines(timeout=2)
        assert line.startswith(f"UI: http://127.0.0.1:{port}/  (not answering: ")
        assert "refused" in line.lower()
    finally:
        stack.stop("frontend", timeout=10)
        proc.wait(10)


def test_status_says_when_nothing_runs(tmp_path, capsys):
    assert main(["status", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == "local stack not running (make up starts it)\n"
