"""devstack.processes.ProcessSupervisor with real child processes."""

from __future__ import annotations

import sys

import pytest

from devstack.processes import ProcessSupervisor

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
QUICK = [sys.executable, "-c", "print('done')"]


def test_a_running_name_is_not_started_twice(tmp_path):
    sup = ProcessSupervisor(tmp_path)
    first = sup.spawn("app", SLEEPER, env={})
    try:
        with pytest.raises(RuntimeError, match="app is already running"):
            sup.spawn("app", SLEEPER, env={})
        # The refused start left the first one reachable: stop still finds and ends it.
        assert sup.processes["app"] is first
        assert sup.pid_path("app").read_text() == str(first.pid)
        sup.stop("app", timeout=10)
        assert first.poll() is not None
    finally:
        if first.poll() is None:
            first.kill()


def test_a_name_whose_process_exited_can_be_started_again(tmp_path):
    sup = ProcessSupervisor(tmp_path)
    sup.spawn("job", QUICK, env={}).wait(timeout=30)
    again = sup.spawn("job", QUICK, env={})
    assert again.wait(timeout=30) == 0
    assert sup.log_path("job").read_text().count("done") == 2
