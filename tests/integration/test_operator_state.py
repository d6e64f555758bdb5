"""The operator's process state (state.py) against the real apiserver and controller manager
(issue 14, operator 8): deleted functions stay forgotten, and the Knative-settings thread
outlives any error.

The operator's `OperatorState` runs in the test process, without kopf, so that the test can act at an
exact point of a pass: kopf's DELETED event arriving while a pass runs cannot be timed from
outside an operator process. Every API call is real; where a test forces a timing or a failure,
its docstring says which and why.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aifunction_operator.controller.kube_client import KubeClient, Resource, load_api_client
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.observability import Metrics
from aifunction_operator.controller.state import OperatorState
from support.kube_client import TestClient, function
from support.processes import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def api(control_plane: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The operator's own API client, on the admin kubeconfig."""
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    client = load_api_client()
    yield client
    client.close()


class DeletedDuringStatusWrite(KubeClient):
    """The real KubeClient; after its status write, the function is deleted for real and kopf's DELETED
    event handler (`OperatorState.forget`) runs on the event loop before the pass's own coroutine resumes."""

    state: OperatorState
    loop: asyncio.AbstractEventLoop
    kube: TestClient

    def patch_status(self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
        written = super().patch_status(resource, namespace, name, status)
        self.kube.delete_function(namespace, name)
        forgotten = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (self.state.forget((namespace, name)), forgotten.set()))
        assert forgotten.wait(10)
        return written


def test_a_function_deleted_while_its_pass_runs_is_not_put_back_nor_its_service_recreated(api: Any, kube: TestClient, namespace: str) -> None:
    """Before the fix the pass re-added the deleted function to the cache, and every later pass
    (the resync, the Service's DELETED event) re-applied a Service owned by the deleted uid, which
    the garbage collector deleted again: forever."""
    key = (namespace, "fn")
    created = kube.create_function(namespace, function("fn"))
    hooked = DeletedDuringStatusWrite(api)
    state = OperatorState(hooked, OperatorConfig(knative_namespace=namespace), Metrics(), workers=2)

    async def scenario() -> None:
        hooked.state, hooked.loop, hooked.kube = state, asyncio.get_running_loop(), kube
        await state.reconcile(key, created)
        assert key not in state.functions, "the deleted function was put back in the cache"
        assert key not in state.readiness and 'aifn_functions{ready="Unknown",reason="Deploying"} 1.0' not in state.metrics.exposition().decode()
        await asyncio.to_thread(wait_until, "the Service garbage-collected", lambda: kube.get_service(namespace, "fn") is None, 60)
        state.observe_service(key, None)  # what the Service watch reports
        await state.reconcile_all()  # the periodic resync
        await asyncio.sleep(1)

    try:
        asyncio.run(scenario())
    finally:
        state.stop()
    assert kube.get_service(namespace, "fn") is None, "a Service owned by the deleted function was applied again"


def test_a_stale_cached_function_creates_nothing_and_is_dropped(api: Any, kube: TestClient, namespace: str) -> None:
    """A cached copy that outlived its function (e.g. a DELETED event missed while kopf's watch
    reconnected) must not create a Service owned by a uid that no longer exists."""
    key = (namespace, "gone")
    body = kube.create_function(namespace, function("gone"))
    kube.delete_function(namespace, "gone")
    state = OperatorState(KubeClient(api), OperatorConfig(knative_namespace=namespace), Metrics(), workers=2)
    state.remember(body)
    try:
        asyncio.run(state.reconcile_all())
    finally:
        state.stop()
    assert kube.get_service(namespace, "gone") is None
    assert key not in state.functions


class FailsOnce(KubeClient):
    """The real KubeClient, except that its first request fails with a non-API error: an answer that is
    not JSON (a proxy's HTML page) makes `json.loads` raise ValueError. A real apiserver never
    answers so, hence the injection."""

    failed = False

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if not self.failed:
            self.failed = True
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        return super().request(method, path, **kwargs)


def test_the_knative_settings_thread_outlives_a_non_api_error(api: Any, kube: TestClient, namespace: str) -> None:
    """Before the fix the thread died on the first error that was not an ApiError, and Knative's
    feature flags were never followed again (while /readyz and /healthz stayed 200)."""
    state = OperatorState(FailsOnce(api), OperatorConfig(knative_namespace=namespace), Metrics(), workers=1)

    async def scenario() -> None:
        thread = state.start_knative_watch(asyncio.get_running_loop())
        await asyncio.to_thread(state.knative_loaded.wait, 10)
        kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "enabled"})
        await asyncio.to_thread(wait_until, "the settings followed after the error", lambda: (state.knative.features or {}).get("kubernetes.podspec-tolerations") == "enabled", 20)
        assert thread.is_alive() and state.liveness_problem() is None

    try:
        asyncio.run(scenario())
    finally:
        state.stop()


def test_a_status_write_refused_with_404_forgets_the_function(api: Any, kube: TestClient, namespace: str) -> None:
    """The function deleted between the pass's check and its status write: forgotten, not retried forever."""
    key = (namespace, "fn")
    created = kube.create_function(namespace, function("fn"))

    class DeletedBeforeStatusWrite(KubeClient):
        def patch_status(self, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]:
            kube.delete_function(namespace, name)
            return super().patch_status(resource, namespace, name, status)

    state = OperatorState(DeletedBeforeStatusWrite(api), OperatorConfig(knative_namespace=namespace), Metrics(), workers=1)
    try:
        assert asyncio.run(state.reconcile(key, created)) is None
    finally:
        state.stop()
    assert key not in state.functions
