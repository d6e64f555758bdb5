"""Fixtures for tests against a real control plane (etcd + kube-apiserver + kube-controller-manager).

One control plane per test session; each test gets its own namespace. When a test fails, the
components' recent logs and the namespace's events are printed with the failure. `kube` and
`start_operator` serve the operator's tests (`aifn operator` as a child process).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.controlplane import Binaries, ControlPlane, Identity, MissingBinaries
from support.kube_client import TestClient
from support.operator_process import OperatorProcess


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Remember each phase's report on the item, so fixtures can tell whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "report_call", None)
    return bool(report is not None and report.failed)


@pytest.fixture(scope="session")
def control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A running control plane with our CRDs and Knative's installed; skipped if `make tools` was not run."""
    try:
        binaries = Binaries.find()
        plane = ControlPlane(binaries)
    except MissingBinaries as missing:
        pytest.skip(str(missing))
    try:
        plane.start()
    except BaseException:
        print(plane.logs())
        plane.stop()
        raise
    print(f"\ncontrol plane at {plane.server} ready in {plane.startup_seconds:.1f}s (data in {plane.workdir})")
    yield plane
    if request.session.testsfailed:
        print(f"\ncontrol-plane logs (tests failed):\n{plane.logs()}")
    plane.stop()


@pytest.fixture
def kubeconfig(control_plane: ControlPlane) -> Path:
    """The admin kubeconfig of the session's control plane."""
    return control_plane.kubeconfig


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{base}-{secrets.token_hex(3)}"
    control_plane.kubectl("create", "namespace", name)
    yield name
    if _failed(request):
        events = control_plane.kubectl("get", "events", "-n", name, check=False).stdout
        print(f"\nevents in {name}:\n{events}\ncontrol-plane logs:\n{control_plane.logs()}")
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def sa_identity(control_plane: ControlPlane, namespace: str) -> Callable[..., Identity]:
    """Factory: `sa_identity(name, namespace=None)` -> an Identity holding only that ServiceAccount's RBAC."""

    def make(name: str, in_namespace: str | None = None) -> Identity:
        return control_plane.service_account_identity(in_namespace or namespace, name)

    return make


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
    for op in started:
        op.stop()
        if _failed(request):
            print(op.log_tail())
