"""Process supervision for the local stack: each part runs as a background process
in its own session (so stopping it stops its children too), with its pid file and
log under one state directory, and readiness is awaited by polling a check.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60.0, proc: subprocess.Popen | None = None,
             log: Path | None = None) -> None:
    """Polls *check* (exceptions count as not ready) until it is true. RuntimeError, with
    the tail of *log*, if *proc* exits first or *timeout* seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with code {proc.returncode} while starting:\n{tail}")
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f}s\n{tail}")


def http_ok(url: str) -> bool:
    """True when *url* answers with a status below 500 within 2 seconds."""
    with urllib.request.urlopen(url, timeout=2) as response:
        return 200 <= response.status < 500


@dataclass
class ProcessSupervisor:
    """Named background processes under *root*: ``logs/<name>.log`` and ``pids/<name>.pid``.

    The pid files let another invocation (``down``, ``status``) find processes that an
    earlier one started; *processes* holds the ones this object started itself.
    """

    root: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def pid_path(self, name: str) -> Path:
        return self.root / "pids" / f"{name}.pid"

    def spawn(self, name: str, argv: list[str], env: dict[str, str], user: str | None = None) -> subprocess.Popen:
        """Starts *argv* from the repository root, output appended to its log; as *user* via runuser if given.

        Raises RuntimeError when this object already runs a process under *name*:
        starting a second one would orphan the first (its pid file and entry replaced,
        so ``stop`` could no longer reach it), and two emus on one queue silently
        skew every figure taken from them. Stop it first; a process that has exited
        may be started again."""
        running = self.processes.get(name)
        if running is not None and running.poll() is None:
            raise RuntimeError(f"{name} is already running (pid {running.pid}); stop it before starting it again")
        self.log_path(name).parent.mkdir(parents=True, exist_ok=True)
        self.pid_path(name).parent.mkdir(parents=True, exist_ok=True)
        if user:
            argv = ["runuser", "-u", user, "--", *argv]
        log = open(self.log_path(name), "ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=REPO, start_new_session=True)
        self.processes[name] = proc
        self.pid_path(name).write_text(str(proc.pid))
        return proc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Sends *sig* to the process group of *name* and waits up to *timeout* seconds,
        then SIGKILLs it. Returns its exit code (-9 when killed, 0 if a process we did
        not start is gone), or None if it was not running."""
        proc = self.processes.pop(name, None)
        pid = proc.pid if proc else None
        if pid is None and self.pid_path(name).exists():
            pid = int(self.pid_path(name).read_text())
        self.pid_path(name).unlink(missing_ok=True)
        if pid is None:
            return None
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return proc.returncode
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return 0
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
        return proc.wait() if proc else -9

    def known(self) -> set[str]:
        """Names with a pid file or started by this object."""
        return {p.stem for p in (self.root / "pids").glob("*.pid")} | set(self.processes)

    def status_lines(self) -> list[str]:
        """One line per pid file: name, pid and whether it still runs."""
        lines = []
        for pid_file in sorted((self.root / "pids").glob("*.pid")):
            pid = int(pid_file.read_text())
            try:
                os.kill(pid, 0)
                state = "running"
            except ProcessLookupError:
                state = "dead"
            lines.append(f"{pid_file.stem:10} pid {pid:7} {state}")
        return lines
