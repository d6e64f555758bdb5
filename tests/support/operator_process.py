"""`aifn operator` as a child process, as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from .processes import free_port, wait_until


def http_get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


class OperatorProcess:
    """One `python -m aifunction_operator operator ...` process with its log in a file."""

    def __init__(self, kubeconfig: Path, log_path: Path, args: Sequence[str] = (), env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.health_port = free_port()
        self.metrics_port = free_port()
        self.args = list(args)
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, wait_ready: bool = True, timeout: float = 30.0) -> OperatorProcess:
        """Start it; by default wait until /readyz answers 200."""
        argv = [sys.executable, "-m", "aifunction_operator", "operator", f"--health-port={self.health_port}", f"--metrics-port={self.metrics_port}", *self.args]
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), **self.env}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait_ready:
            wait_until("the operator's /readyz", lambda: self.alive_or_fail() and http_get(self.url("/readyz"))[0] == 200, timeout,
                       diagnose=self.log_tail)
        return self

    def alive_or_fail(self) -> bool:
        """True while running; raise with the log if it exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
        return True

    def url(self, path: str) -> str:
        port = self.metrics_port if path == "/metrics" else self.health_port
        return f"http://127.0.0.1:{port}{path}"

    def metrics(self) -> str:
        status, body = http_get(self.url("/metrics"))
        assert status == 200, f"/metrics answered {status}"
        return body

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM and wait; the exit code (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a node dies."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def log_tail(self, max_bytes: int = 8000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return "(no operator log)"
        return f"----- operator log {self.log_path} -----\n" + data[-max_bytes:].decode(errors="replace")
