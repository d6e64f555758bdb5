"""Transient API errors back off instead of failing: caused for real with an API server that does not answer."""

from __future__ import annotations

import asyncio

import kopf
import pytest
from kubernetes import client

from aifunction_operator.controller.kube_client import AIFUNCTIONS, ApiError, KubeClient
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.wiring import _reconcile
from aifunction_operator.controller.observability import Metrics
from aifunction_operator.controller.state import OperatorState
from support.processes import free_port

FUNCTION = {
    "apiVersion": "aifn.dev/v1alpha1",
    "kind": "AIFunction",
    "metadata": {"name": "fn", "namespace": "ns", "uid": "u-1", "generation": 1, "resourceVersion": "5"},
    "spec": {"model": {"name": "m", "repository": "s3://bucket/repo"}},
}


def unreachable_kube() -> KubeClient:
    """A client for a port nothing listens on: every request fails at connect time."""
    configuration = client.Configuration(host=f"https://127.0.0.1:{free_port()}")
    configuration.retries = 0
    return KubeClient(client.ApiClient(configuration), timeout=2)


def test_no_answer_is_a_transient_api_error() -> None:
    with pytest.raises(ApiError) as caught:
        unreachable_kube().get(AIFUNCTIONS, "ns", "fn")
    assert caught.value.status == 0 and caught.value.transient


@pytest.mark.parametrize(("status", "transient"), [(409, True), (429, True), (503, True), (400, False), (403, False), (422, False)])
def test_which_statuses_are_worth_a_retry(status: int, transient: bool) -> None:
    assert ApiError(status, "x").transient is transient


def test_handler_turns_a_transient_failure_into_a_backoff() -> None:
    metrics = Metrics()
    state = OperatorState(unreachable_kube(), OperatorConfig(), metrics, workers=2)
    try:
        with pytest.raises(kopf.TemporaryError) as caught:
            asyncio.run(_reconcile(state, ("ns", "fn"), dict(FUNCTION), retry=3))
    finally:
        state.stop()
    assert caught.value.delay == 8.0  # 2 ** retry seconds, capped at 60
    assert 'aifn_reconciles_total{result="error"} 1.0' in metrics.exposition().decode()
