"""Harness for `aifn run` tests: the real command in a subprocess, a real Triton behind it.

`run_function(...)` writes an AIFunction file, starts `python -m aifunction_operator run`
on a free port exactly as a user would, waits until the gateway answers, and stops it with
SIGINT at the end of the test, checking that it exits cleanly and leaves no Triton behind.
Triton processes are found through /proc as the gateway's children, so "no Triton" means
no process, not just an empty status page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.processes import free_port, wait_until

from aifunction_operator.local.tritonserver import child_pids, process_group_pids

MODEL_REPO = Path(__file__).resolve().parents[3] / "model_repo"

TEST_MODELS = Path(__file__).parent / "models"


def triton_or_skip() -> None:
    """Skip (saying why) when this machine has no usable tritonserver."""
    from aifunction_operator.local.tritonserver import TritonUnavailable, find_triton

    try:
        find_triton()
    except TritonUnavailable as exc:
        pytest.skip(f"no tritonserver here: {exc}")


def digits_repo_or_skip() -> Path:
    """model_repo/, when the digits model has been built (make models)."""
    if not (MODEL_REPO / "digits" / "config.pbtxt").is_file() or not (MODEL_REPO / "digits" / "1" / "model.pt").is_file():
        pytest.skip("model_repo/digits is not built (run `make models`)")
    return MODEL_REPO


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 60.0) -> Response:
    """One HTTP request; 4xx/5xx are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Response(resp.status, dict(resp.headers), resp.read())
    except urllib.error.HTTPError as exc:
        return Response(exc.code, dict(exc.headers), exc.read())


def digits_request(images: list[list[list[float]]]) -> bytes:
    """A KServe v2 JSON inference request for the digits model."""
    flat = [float(v) for image in images for row in image for v in row]
    return json.dumps({"inputs": [{"name": "image", "shape": [len(images), 8, 8], "datatype": "FP32", "data": flat}]}).encode()


@dataclass
class LocalRun:
    """A running `aifn run` process and helpers to talk to it."""

    proc: subprocess.Popen[bytes]
    url: str
    output: Path
    stopped: bool = field(default=False)
    expected_exit: int = 0  # what teardown expects of the process (a test that kills it says so)
    seen_pids: set[int] = field(default_factory=set)

    def get(self, path: str) -> Response:
        return http("GET", self.url + path)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None, timeout: float = 120.0) -> Response:
        return http("POST", self.url + path, body, {"Content-Type": "application/json", **(headers or {})}, timeout)

    def status(self) -> dict[str, Any]:
        status = self.get("/aifn/status").json()
        self.seen_pids.update(r["pid"] for r in status["replicas"] if r["pid"])
        return status

    def triton_pids(self) -> list[int]:
        pids = child_pids(self.proc.pid, "tritonserver")
        self.seen_pids.update(pids)
        return pids

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self, timeout: float = 60.0) -> int:
        """SIGINT, as Ctrl-C would; returns the exit code."""
        if self.stopped:
            return self.proc.returncode
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"aifn run did not stop within {timeout:.0f}s of SIGINT:\n{self.log()[-3000:]}")
        return self.proc.returncode


def write_function(
    directory: Path, *, name: str, model: str, repository: Path, scaling: dict[str, Any], protocol: str = "http",
    timeout_seconds: int = 60,
) -> Path:
    doc = {
        "apiVersion": "aifn.dev/v1alpha1",
        "kind": "AIFunction",
        "metadata": {"name": name, "annotations": {"aifn.dev/local-model-repository": str(repository)}},
        "spec": {
            "model": {"name": model, "repository": "pvc://aifn-models"},
            "runtime": {"protocol": protocol},
            "scaling": scaling,
            "timeoutSeconds": timeout_seconds,
        },
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def run_function(tmp_path: Path) -> Iterator[Callable[..., LocalRun]]:
    """Factory: start `aifn run` for a function; every run is stopped and checked at teardown."""
    runs: list[LocalRun] = []

    def start(
        *,
        model: str = "digits",
        repository: Path | None = None,
        scaling: dict[str, Any] | None = None,
        args: tuple[str, ...] = (),
        protocol: str = "http",
        function_file: Path | None = None,
        timeout_seconds: int = 60,
    ) -> LocalRun:
        triton_or_skip()
        repo = repository or digits_repo_or_skip()
        path = function_file or write_function(
            tmp_path, name=f"fn{len(runs)}", model=model, repository=repo, scaling=scaling or {}, protocol=protocol,
            timeout_seconds=timeout_seconds,
        )
        port = free_port()
        output = tmp_path / f"run{len(runs)}.log"
        with open(output, "wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "aifunction_operator", "run", str(path), "--port", str(port),
                 "--log-dir", str(tmp_path / f"triton{len(runs)}"), *args],
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )
        run = LocalRun(proc, f"http://127.0.0.1:{port}", output)
        runs.append(run)

        def live() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"aifn run exited with {proc.returncode}:\n{run.log()}")
            try:
                return http("GET", run.url + "/v2/health/live", timeout=1).status == 200
            except OSError:
                return False

        wait_until("the gateway to answer /v2/health/live", live, 30, diagnose=lambda: run.log()[-3000:])
        return run

    yield start
    for run in runs:
        if run.proc.poll() is None:
            run.triton_pids()
        code = run.stop()
        leftovers = {pgid: process_group_pids(pgid) for pgid in run.seen_pids if process_group_pids(pgid)}
        assert code == run.expected_exit, f"aifn run exited with {code}:\n{run.log()[-3000:]}"
        assert not leftovers, f"Triton processes (by process group) left behind after aifn run stopped: {leftovers}"
