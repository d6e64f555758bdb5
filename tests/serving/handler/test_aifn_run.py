"""End to end through the real `aifn run` command: a Lambda-style handler that lives outside
the repository, in front of a real Triton that starts on the first request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from support.processes import free_port, wait_until

from aifunction_operator.local.tritonserver import TritonInstall

from .conftest import MODEL_REPO, Reply, post_json, reply_while_running, request

pytestmark = [pytest.mark.triton, pytest.mark.timeout(400)]

HANDLER = textwrap.dedent(
    '''
    import json
    import numpy as np

    def lambda_handler(event, context):
        if event.get("cloudEvent"):
            return {"statusCode": 202, "body": json.dumps({"accepted": event["cloudEvent"]["id"]})}
        body = json.loads(event["body"])
        if body.get("explode"):
            raise KeyError("no such digit")
        x = np.asarray(body["pixels"], dtype=np.float32).reshape(1, 8, 8)
        out = context.infer({"image": x})
        label = int(out["label"][0, 0])
        return {"statusCode": 200, "body": json.dumps({"label": label, "confidence": float(out["probabilities"][0, label])})}
    '''
)


class Run:
    def __init__(self, function_file: Path, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        with open(log, "wb") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "aifunction_operator", "run", str(function_file), "--port", str(self.port),
                 "--idle-timeout", "30s"],
                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_until("aifn run to answer /v2/health/live",
                   lambda: (reply := reply_while_running(self.proc, f"{self.url}/v2/health/live", self.log, timeout=1))
                   and reply.status == 200, 60, interval=0.2, diagnose=self.log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def function_file(directory: Path, handler: dict, annotations: dict | None = None) -> Path:
    doc = {
        "apiVersion": "aifn.dev/v1alpha1",
        "kind": "AIFunction",
        "metadata": {"name": "my-digits", "annotations": {"aifn.dev/local-model-repository": str(MODEL_REPO), **(annotations or {})}},
        "spec": {"model": {"name": "digits", "repository": "pvc://aifn-models"}, "handler": handler,
                 "scaling": {"minReplicas": 0, "maxReplicas": 1}},
    }
    path = directory / "my-digits.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def outside_handler(tmp_path: Path, triton_present: TritonInstall) -> Iterator[Run]:
    code = tmp_path / "elsewhere"
    code.mkdir()
    (code / "mydigits.py").write_text(HANDLER)
    path = function_file(tmp_path, {"entrypoint": "mydigits:lambda_handler"}, {"aifn.dev/local-handler-path": "elsewhere"})
    run = Run(path, tmp_path / "run.log")
    yield run
    assert run.stop() == 0, run.log()[-3000:]


def test_lambda_handler_through_aifn_run(outside_handler: Run, digits_data) -> None:
    images, truth = digits_data
    status = request(f"{outside_handler.url}/aifn/status").json()
    assert not any(r.get("pid") for r in status.get("replicas", [])), "a replica ran before the first request"
    first = post_json(f"{outside_handler.url}/", {"pixels": images[42].ravel().tolist()})  # cold start
    assert first.status == 200, first.body
    assert first.json()["label"] == truth[42]
    answers = [post_json(f"{outside_handler.url}/invoke", {"pixels": images[i].ravel().tolist()}) for i in range(60, 90)]
    assert all(a.status == 200 for a in answers)
    assert sum(a.json()["label"] == truth[i] for a, i in zip(answers, range(60, 90))) >= 29

    boom = post_json(f"{outside_handler.url}/", {"explode": True})
    assert boom.status == 500 and boom.json()["error"] == "KeyError: 'no such digit'"
    bad = request(f"{outside_handler.url}/", b'{"pixels": [', {"Content-Type": "application/json"})
    assert bad.status == 400 and "not valid JSON" in bad.json()["error"]
    ce = request(f"{outside_handler.url}/", b"{}", {"Content-Type": "application/json", "ce-specversion": "1.0",
                                                     "ce-id": "e-1", "ce-source": "/x", "ce-type": "t"})
    assert ce.status == 202 and ce.json() == {"accepted": "e-1"}
    again = post_json(f"{outside_handler.url}/", {"pixels": images[43].ravel().tolist()})
    assert again.status == 200 and again.json()["label"] == truth[43]
    assert "Traceback" in outside_handler.log() and "KeyError" in outside_handler.log()


def test_inline_code_through_aifn_run(tmp_path: Path, triton_present: TritonInstall, digits_data) -> None:
    path = function_file(tmp_path, {"entrypoint": "inline_digits:lambda_handler", "code": HANDLER})
    run = Run(path, tmp_path / "run.log")
    try:
        images, truth = digits_data
        reply: Reply = post_json(f"{run.url}/", {"pixels": images[77].ravel().tolist()})
        assert reply.status == 200 and reply.json()["label"] == truth[77]
    finally:
        assert run.stop() == 0, run.log()[-3000:]


def test_unloadable_handler_stops_aifn_run_with_a_clear_message(tmp_path: Path, triton_present: TritonInstall) -> None:
    path = function_file(tmp_path, {"entrypoint": "broken:lambda_handler", "code": "import not_installed_anywhere\n"})
    done = subprocess.run([sys.executable, "-m", "aifunction_operator", "run", str(path), "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "spec.handler" in done.stderr and "not_installed_anywhere" in done.stderr
