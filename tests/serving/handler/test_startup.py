"""The handler container's start and readiness: code that cannot load stops it with a clear
message; `/v2/health/ready` is 200 only while Triton's model is ready, and requests made
while Triton is away are a 503 that says so."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.processes import free_port, wait_until

from .conftest import handler_env, launch_handler, reply_while_running, request, wait_ready

pytestmark = [pytest.mark.triton, pytest.mark.timeout(300)]


def run_to_exit(tmp_path, entrypoint: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = handler_env(tmp_path, entrypoint, f"127.0.0.1:{free_port()}", free_port(), **env)
    return subprocess.run(
        [sys.executable, "-m", "aifunction_operator.handler"], env=environment,
        capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("code", "entrypoint", "message"),
    [
        ("def lambda_handler(event, context): return 1\n", "app.lambda_handler", "must be 'module:function'"),
        ("def lambda_handler(event, context): return 1\n", "missing:lambda_handler", "handler module 'missing' not found"),
        ("def lambda_handler(event, context): return 1\n", "app:handler", "has no attribute 'handler'"),
        ("def lambda_handler(event): return 1\n", "app:lambda_handler", "must accept two arguments"),
        ("import does_not_exist\n", "app:lambda_handler", "No module named 'does_not_exist'"),
        ("class T:\n    def load(self):\n        raise RuntimeError('no weights')\n    def preprocess(self, b, h):\n        return b\n",
         "app:T", "app:T.load() failed: RuntimeError('no weights')"),
    ],
)
def test_unusable_code_exits_2_with_a_clear_message(tmp_path, code: str, entrypoint: str, message: str) -> None:
    (tmp_path / "app.py").write_text(code)
    done = run_to_exit(tmp_path, entrypoint)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_missing_settings_exit_2_naming_the_variable(tmp_path) -> None:
    done = run_to_exit(tmp_path, "app:x", AIFN_MODEL_NAME="")
    assert done.returncode == 2 and "AIFN_MODEL_NAME" in done.stderr


def test_not_ready_without_triton_and_503_on_requests(tmp_path, tmp_path_factory) -> None:
    (tmp_path / "app.py").write_text("def lambda_handler(event, context):\n    return context.infer({'image': [[[0.0]*8]*8]})\n")
    dead_triton = f"127.0.0.1:{free_port()}"
    server = launch_handler(tmp_path, "app:lambda_handler", dead_triton, tmp_path_factory.mktemp("logs"))
    try:
        live = wait_until("the handler to answer /v2/health/live",
                          lambda: reply_while_running(server.proc, f"{server.url}/v2/health/live", server.log), 60,
                          interval=0.2, diagnose=lambda: server.log()[-3000:])
        assert live.status == 200
        ready = request(f"{server.url}/v2/health/ready")
        assert ready.status == 503 and "not ready" in ready.json()["error"]
        reply = request(f"{server.url}/", b"{}", {"Content-Type": "application/json"})
        assert reply.status == 503 and "digits" in reply.json()["error"]
    finally:
        server.stop()


def test_ready_follows_triton(digits_triton, tmp_path, tmp_path_factory) -> None:
    (tmp_path / "app.py").write_text("def lambda_handler(event, context):\n    return {}\n")
    server = launch_handler(tmp_path, "app:lambda_handler", digits_triton.http_url, tmp_path_factory.mktemp("logs"))
    try:
        wait_ready(server)
        assert request(f"{server.url}/v2/health/ready").json() == {"ready": True}
    finally:
        assert server.stop() == 0 or server.proc.returncode in (0, -15)
