"""Fixtures for the operator's integration tests; test modules import them by name."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .controlplane import ControlPlane
from .kube_client import TestClient
from .operator_process import OperatorProcess


@pytest.fixture
def kube(control_plane: ControlPlane) -> TestClient:
    """An admin client for arranging and inspecting objects."""
    return TestClient(control_plane.kubeconfig)


@pytest.fixture
def start_operator(control_plane: ControlPlane, namespace: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., OperatorProcess]]:
    """Factory: start `aifn operator` watching the test's namespace, with Knative's ConfigMaps read from it too.

    Using the test namespace as the "Knative namespace" keeps each test's feature flags its own.
    Every operator started is stopped at the end; on failure its log is printed.
    """
    started: list[OperatorProcess] = []

    def start(*extra: str, kubeconfig: Path | None = None, wait_ready: bool = True, scope: tuple[str, ...] | None = None) -> OperatorProcess:
        namespaces = (namespace,) if scope is None else scope
        args = [*(f"--namespace={ns}" for ns in namespaces), f"--knative-namespace={namespace}", *extra]
        if not any(a.startswith("--peering") or a == "--standalone" for a in extra):
            args.append("--standalone")
        op = OperatorProcess(kubeconfig or control_plane.kubeconfig, tmp_path / f"operator-{len(started)}.log", args)
        started.append(op)
        return op.start(wait_ready=wait_ready)

    yield start
    failed = getattr(request.node, "report_call", None)
    for op in started:
        op.stop()
        if failed is not None and failed.failed:
            print(op.log_tail())
