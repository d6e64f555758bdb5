"""aifunction_operator.local.tritonserver against the real tritonserver from nvidia-pytriton.

A tiny numpy-only python-backend model keeps server start-up short; the shipped models are
exercised in test_digits.py and test_minilm.py.
"""

from __future__ import annotations

import os
import platform
import re
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from aifunction_operator.triton_command import DEFAULT_TRITON_IMAGE
from aifunction_operator.local import tritonserver
from aifunction_operator.local.tritonserver import (
    TritonInstall,
    TritonProcess,
    TritonStartError,
    TritonUnavailable,
    find_triton,
    free_ports,
    process_group_pids,
)

pytestmark = pytest.mark.triton

DOUBLER_CONFIG = """
backend: "python"
max_batch_size: 8
input [{ name: "x", data_type: TYPE_FP32, dims: [2] }]
output [{ name: "y", data_type: TYPE_FP32, dims: [2] }]
instance_group [{ kind: KIND_CPU }]
"""
DOUBLER_MODEL = """
import sys
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        import torch  # proves the stub sees the virtual environment's site-packages
        pb_utils.Logger.log_info(f"doubler: python {sys.version.split()[0]} prefix {sys.prefix}")

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy() * 2)])
            for r in requests
        ]
"""


@pytest.fixture()
def doubler_repo(tmp_path: Path) -> Path:
    model = tmp_path / "repo" / "doubler"
    (model / "1").mkdir(parents=True)
    (model / "config.pbtxt").write_text(DOUBLER_CONFIG)
    (model / "1" / "model.py").write_text(DOUBLER_MODEL)
    return tmp_path / "repo"


def double(server: TritonProcess) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        tensor = httpclient.InferInput("x", [3, 2], "FP32")
        tensor.set_data_from_numpy(np.arange(6, dtype=np.float32).reshape(3, 2))
        return client.infer("doubler", [tensor]).as_numpy("y")
    finally:
        client.close()


def test_find_triton_prepares_the_python_backend_once(triton_install: TritonInstall):
    stub = triton_install.backends_dir / "python" / "triton_python_backend_stub"
    assert os.access(triton_install.binary, os.X_OK) and os.access(stub, os.X_OK)
    assert (triton_install.backends_dir / "python" / "libtriton_python.so").is_file()
    before = stub.stat().st_mtime_ns
    again = find_triton()
    assert again == triton_install
    assert stub.stat().st_mtime_ns == before, "the stub was copied again"


def test_environment_puts_this_interpreter_first(triton_install: TritonInstall):
    import sysconfig

    env = triton_install.environment({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x"})
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == sysconfig.get_config_var("LIBDIR")
    assert env["LD_LIBRARY_PATH"].split(os.pathsep)[-1] == "/opt/x"
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)


def test_start_serve_stop_leaves_no_process(triton_install: TritonInstall, doubler_repo: Path, tmp_path: Path):
    server = TritonProcess(triton_install, doubler_repo, "doubler", log_path=tmp_path / "triton.log")
    with server:
        server.wait_ready(120)
        assert server.ports.address == "127.0.0.1"
        np.testing.assert_array_equal(double(server), np.arange(6, dtype=np.float32).reshape(3, 2) * 2)
        members = server.group_pids()
        assert server.pid in members and len(members) >= 2, f"expected server + stub, got {members}"
    assert server.returncode == 0, server.log_tail()
    assert process_group_pids(server.pid) == []
    log = (tmp_path / "triton.log").read_text()
    assert f"prefix {sys.prefix}" in log, "the stub did not run in this virtual environment"


def test_unknown_model_fails_fast_with_the_log(triton_install: TritonInstall, doubler_repo: Path):
    server = TritonProcess(triton_install, doubler_repo, "no_such_model").start()
    try:
        with pytest.raises(TritonStartError, match="no_such_model") as caught:
            server.wait_ready(60)
        assert "exited with status" in str(caught.value)
    finally:
        server.stop()
    assert process_group_pids(server.pid) == []


def test_stop_kills_the_group_when_the_server_hangs_on_a_client(
    triton_install: TritonInstall, doubler_repo: Path
):
    server = TritonProcess(triton_install, doubler_repo, "doubler").start()
    client = httpclient.InferenceServerClient(server.http_url)
    try:
        server.wait_ready(120)
        client.is_server_ready()  # an idle keep-alive connection makes Triton wait on SIGTERM
        started = time.monotonic()
        code = server.stop(grace=2.0)
        assert time.monotonic() - started < 10
        assert code == -signal.SIGKILL
    finally:
        client.close()
        server.stop()
    assert process_group_pids(server.pid) == []


def test_stop_after_a_crash_removes_orphaned_stubs(triton_install: TritonInstall, doubler_repo: Path):
    server = TritonProcess(triton_install, doubler_repo, "doubler").start()
    try:
        server.wait_ready(120)
        stubs = [pid for pid in server.group_pids() if pid != server.pid]
        assert stubs, "no python backend stub found"
        os.kill(server.pid, signal.SIGKILL)  # a real crash of the server alone
        time.sleep(0.5)
        assert server.returncode == -signal.SIGKILL
    finally:
        server.stop()
    assert process_group_pids(server.pid) == []


def test_free_ports_are_distinct_and_local():
    ports = free_ports()
    assert len({ports.http, ports.grpc, ports.metrics}) == 3
    assert ports.address == "127.0.0.1"


def test_unsupported_platform_says_to_use_the_container(monkeypatch: pytest.MonkeyPatch):
    # Mocked: this machine is x86_64 Linux, and a foreign architecture cannot be caused for real.
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(TritonUnavailable, match=f"riscv64.*{re.escape(DEFAULT_TRITON_IMAGE)}"):
        tritonserver.find_triton()
