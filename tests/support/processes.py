"""Child processes of the tests: free ports, log files, clean stops, and the one polling wait.

`free_port` and `wait_until` are the suite's only helpers of their kind; every tier imports them
from here rather than keeping a copy.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

_PR_SET_PDEATHSIG = 1
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when the parent dies."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class Component:
    """One long-running binary with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the binary in its own process group; it dies with this process."""
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    @property
    def pid(self) -> int | None:
        """The process id, or None before start."""
        return self._process.pid if self._process else None

    def exit_code(self) -> int | None:
        """The exit status if the process has ended, else None."""
        return self._process.poll() if self._process else None

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL it after `grace` seconds."""
        process = self._process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=grace)
        except ProcessLookupError:
            pass

    def log_tail(self, max_bytes: int = 8000) -> str:
        """The last `max_bytes` of the component's output."""
        if not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()
        return data[-max_bytes:].decode("utf-8", errors="replace")


def wait_until(what: str, probe: Callable[[], T], timeout: float, component: Component | None = None, *,
               interval: float = 0.1, diagnose: Callable[[], str] | None = None) -> T:
    """Call `probe` every `interval` seconds until it returns something truthy, and return that.

    The probe runs at least once. After `timeout` seconds raise TimeoutError naming `what`, the
    probe's last value (unless None or False) and what `diagnose()` says. With `component`, raise
    RuntimeError with its log tail as soon as it exits, and add the tail to a timeout too. The probe's
    own exceptions propagate, so a probe can fail at once (e.g. when the process it waits on died).
    """
    deadline = time.monotonic() + timeout
    while True:
        if component is not None and component.exit_code() is not None:
            raise RuntimeError(
                f"{component.name} exited with status {component.exit_code()} while waiting for {what}; "
                f"last output:\n{component.log_tail()}"
            )
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:.0f}s waiting for {what}"
            if value is not None and value is not False:
                last = repr(value)
                message += f" (last: {last[:500]}{'...' if len(last) > 500 else ''})"
            if diagnose is not None:
                message += f"\n{diagnose()}"
            if component is not None:
                message += f"\nlast output of {component.name}:\n{component.log_tail()}"
            raise TimeoutError(message)
        time.sleep(interval)


def http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    """True when GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, ssl.SSLError):
        return False
