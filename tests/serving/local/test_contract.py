"""Contract: `aifn run` starts tritonserver with the renderer's command line, except where it must differ.

Allowed differences: the model repository path, the ports, the loopback bind addresses, and
the wheel-specific flags (backend and cache directories, python shm prefix). Everything else,
including the function's own `spec.runtime.args`, must be identical. No Triton is started.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.local.autoscaler import ScalingPolicy
from aifunction_operator.local.metrics import GatewayMetrics
from aifunction_operator.local.serve import RunOptions, build_pool
from aifunction_operator.local.tritonserver import TritonInstall
from aifunction_operator.render import render
from aifunction_operator.spec import parse_function

ROOT = Path(__file__).resolve().parents[3]
LOCAL_ONLY = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=", "--http-address=",
              "--grpc-address=", "--metrics-address=", "--backend-directory=", "--cache-directory=",
              "--backend-config=python,shm-region-prefix-name=")
# A description of an install (paths only): command() never runs it.
INSTALL = TritonInstall(
    binary=Path("/opt/tritonserver/bin/tritonserver"), backends_dir=Path("/opt/backends"), cache_dir=Path("/opt/caches"),
    library_dirs=(), python_bin_dir=Path("/usr/bin"), version="0.7.0",
)


def _function(extra_args: list[str]) -> dict:
    doc = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    doc["spec"]["runtime"] = {"args": extra_args}
    return doc


def _cluster_args(doc: dict) -> list[str]:
    service = render(parse_function(doc), OperatorConfig())[0]
    (container,) = [c for c in service["spec"]["template"]["spec"]["containers"] if "args" in c]
    return container["args"]


def _local_command(doc: dict, tmp_path: Path) -> list[str]:
    fn = parse_function(doc)
    pool = build_pool(fn, tmp_path, RunOptions(), INSTALL, GatewayMetrics(fn.name), tmp_path)
    return pool.new_process(1).command()


def _shared(args: list[str]) -> list[str]:
    return [a for a in args if not a.startswith(LOCAL_ONLY)]


def test_local_and_cluster_triton_command_lines_match(tmp_path: Path) -> None:
    doc = _function(["--log-verbose=1", "--model-load-thread-count=2"])
    local = _local_command(doc, tmp_path)
    cluster = _cluster_args(doc)
    assert local[0] == str(INSTALL.binary)
    assert _shared(local[1:]) == _shared(cluster)
    assert "--log-verbose=1" in local and "--load-model=digits" in local and "--strict-readiness=true" in local
    restricted = [a for a in local if a.startswith(("--http-restricted-api=", "--grpc-restricted-protocol="))]
    assert len(restricted) == 2 and all("model-repository,shared-memory,trace,logging:" in a for a in restricted), restricted


def test_local_replicas_listen_on_loopback_only(tmp_path: Path) -> None:
    local = _local_command(_function([]), tmp_path)
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in local
    assert f"--model-repository={tmp_path.resolve()}" in local


def test_scaling_policy_comes_from_the_function(tmp_path: Path) -> None:
    fn = parse_function(_function([]))
    pool = build_pool(fn, tmp_path, RunOptions(idle_timeout=5.0), INSTALL, GatewayMetrics(fn.name), tmp_path)
    assert pool.policy == ScalingPolicy.from_scaling(fn.spec.scaling, idle_timeout=5.0, default_max_replicas=1)
    assert pool.startup_timeout == 300.0
    assert pool.policy.to_zero_after == 30.0  # examples/digits.yaml: scaleToZeroRetention 30s
