"""Harness for the handler runtime: a real Triton serving model_repo/digits, and the real
handler container process (`python -m aifunction_operator.handler`) in front of it.

`start_handler(code_dir, entrypoint)` starts the runtime exactly as the Knative Service's
`handler` container runs it (same command, same environment variables), on a free port,
and waits for `/v2/health/ready`. Every process is stopped at the end of its scope.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.processes import free_port, wait_until
from support.triton import serve_model

from aifunction_operator.local.tritonserver import TritonInstall, TritonProcess, TritonUnavailable, find_triton

ROOT = Path(__file__).resolve().parents[3]
MODEL_REPO = ROOT / "model_repo"
HANDLER_START_TIMEOUT_S = 60.0


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


def request(url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None,
            method: str | None = None, timeout: float = 30.0) -> Reply:
    """One HTTP request with the standard library; any status is returned, not raised."""
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def post_json(url: str, payload: object, headers: Mapping[str, str] | None = None) -> Reply:
    return request(url, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


@dataclass
class HandlerServer:
    """A running handler runtime process."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def handler_env(code_dir: Path, entrypoint: str, triton_url: str, port: int, **extra: str) -> dict[str, str]:
    """The environment the renderer gives the handler container (plus PORT, which Knative injects)."""
    env = dict(os.environ)
    env.update(
        AIFN_HANDLER_ENTRYPOINT=entrypoint,
        AIFN_HANDLER_PATH=str(code_dir),
        AIFN_TRITON_URL=triton_url,
        AIFN_MODEL_NAME="digits",
        AIFN_FUNCTION_NAME="digits-fn",
        PORT=str(port),
    )
    env.update(extra)
    return env


def launch_handler(code_dir: Path, entrypoint: str, triton_url: str, log_dir: Path, **extra: str) -> HandlerServer:
    """Start `python -m aifunction_operator.handler` (does not wait)."""
    port = free_port()
    log_path = log_dir / f"handler-{entrypoint.replace(':', '-')}-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aifunction_operator.handler"],
            env=handler_env(code_dir, entrypoint, triton_url, port, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return HandlerServer(proc, port, log_path)


def reply_while_running(proc: subprocess.Popen[bytes], url: str, log: Callable[[], str], timeout: float = 2.0) -> Reply | None:
    """GET `url`: the reply, or None while nothing answers; fails with the log once `proc` has exited."""
    if proc.poll() is not None:
        raise AssertionError(f"the process that should answer {url} exited with {proc.returncode}:\n{log()[-3000:]}")
    try:
        return request(url, timeout=timeout)
    except OSError:
        return None


def wait_ready(server: HandlerServer, timeout: float = HANDLER_START_TIMEOUT_S) -> None:
    wait_until("the handler's /v2/health/ready",
               lambda: (reply := reply_while_running(server.proc, f"{server.url}/v2/health/ready", server.log)) and reply.status == 200,
               timeout, interval=0.2, diagnose=lambda: server.log()[-3000:])


@pytest.fixture(scope="session")
def triton_present() -> TritonInstall:
    """A usable tritonserver and the built digits model (skips, saying why, without either)."""
    try:
        install = find_triton()
    except TritonUnavailable as exc:
        pytest.skip(f"no usable tritonserver on this machine: {exc}")
    if not (MODEL_REPO / "digits" / "1" / "model.pt").is_file():
        pytest.skip("model_repo/digits is not built (run `make models`)")
    return install


@pytest.fixture(scope="session")
def digits_triton(triton_present: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real Triton serving model_repo/digits for the whole session (skips, saying why, without one)."""
    with serve_model(triton_present, MODEL_REPO, "digits", tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="module")
def start_handler(
    digits_triton: TritonProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., HandlerServer]]:
    """start_handler(code_dir, entrypoint, **env) -> a ready HandlerServer; all stopped after the module."""
    started: list[HandlerServer] = []
    log_dir = tmp_path_factory.mktemp("handler-logs")

    def start(code_dir: Path, entrypoint: str, **extra: str) -> HandlerServer:
        server = launch_handler(code_dir, entrypoint, digits_triton.http_url, log_dir, **extra)
        started.append(server)
        wait_ready(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def digits_data():  # -> (images float32 [n,8,8], labels int64 [n])
    from sklearn.datasets import load_digits

    import numpy as np

    data = load_digits()
    return data.images.astype(np.float32), data.target.astype(np.int64)
