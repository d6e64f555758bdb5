"""Knative's real webhook as a validation gate: every golden rendering, and every function of
examples/, is accepted by Knative Serving 1.23 running on the cluster (server-side dry run through
its defaulting and validating webhooks), beside `ksvc-check`. Known-bad Services are refused by
both, with the same messages. Where they disagree the webhook wins; what ksvc-check cannot see is
asserted here so it stays written down (RuntimeClass: the webhook dry-runs a Pod against the apiserver).
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import BIN, ROOT

from .conftest import ClusterClient

pytestmark = [pytest.mark.cluster]
KSVC_CHECK = BIN / "ksvc-check"
GOLDEN = sorted((ROOT / "tests" / "unit" / "golden").glob("*.yaml"))
RUNTIME_CLASS = {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass", "metadata": {"name": "nvidia"},
                 "handler": "nvidia"}


def ksvc_check(stream: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KSVC_CHECK)], input=stream, capture_output=True, text=True, timeout=60)


def dry_run(cluster: ClusterClient, docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Server-side dry run of `docs` through the apiserver and Knative's webhooks."""
    return cluster.kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=aifn-operator", "-f", "-",
                           input=yaml.safe_dump_all(docs), check=False, timeout=60)


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    moved = copy.deepcopy(docs)
    for doc in moved:
        doc["metadata"]["namespace"] = namespace
    return moved


def knative_services(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "Service"]


@pytest.fixture
def runtime_class(cluster: ClusterClient) -> Iterator[None]:
    """RuntimeClass `nvidia` (what GPU clusters with the NVIDIA container toolkit have)."""
    cluster.apply(RUNTIME_CLASS)
    yield
    cluster.kubectl("delete", "runtimeclass", "nvidia", "--ignore-not-found", check=False)


def test_goldens_exist() -> None:
    assert len(GOLDEN) >= 9 and KSVC_CHECK.exists()


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.stem)
def test_knatives_webhook_accepts_every_golden_rendering(cluster: ClusterClient, namespace: str, runtime_class: None,
                                                        path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    applied = dry_run(cluster, in_namespace(docs, namespace))
    assert applied.returncode == 0, f"Knative's webhook refused {path.name}:\n{applied.stderr}"
    checked = ksvc_check(yaml.safe_dump_all(knative_services(path)))
    assert checked.returncode == 0, f"ksvc-check refused what the webhook accepts ({path.name}):\n{checked.stdout}"


def _reserved_port(service: dict[str, Any]) -> None:
    service["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"name": "http1", "containerPort": 8012}]


def _negative_min_scale(service: dict[str, Any]) -> None:
    service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "-1"


def _lifecycle_hook(service: dict[str, Any]) -> None:
    service["spec"]["template"]["spec"]["containers"][0]["lifecycle"] = {"preStop": {"exec": {"command": ["true"]}}}


@pytest.mark.parametrize(("breaker", "cluster_message", "ksvc_check_message"), [
    (_reserved_port, "8012 is a reserved port", "8012 is a reserved port"),
    (_negative_min_scale, "expected 0 <= -1 <= 2147483647", "expected 0 <= -1 <= 2147483647"),
    # The installed CRD's schema has no `lifecycle`: the apiserver refuses it before the webhook sees
    # it; ksvc-check reports Knative's field mask. Both refuse; the messages differ.
    (_lifecycle_hook, ".spec.template.spec.containers[0].lifecycle: field not declared in schema",
     "must not set the field(s): spec.template.spec.containers[0].lifecycle"),
], ids=["reserved-port", "negative-min-scale", "lifecycle-hook"])
def test_webhook_and_ksvc_check_refuse_the_same_services(cluster: ClusterClient, namespace: str, breaker: Any,
                                                         cluster_message: str, ksvc_check_message: str) -> None:
    (service,) = knative_services(ROOT / "tests" / "unit" / "golden" / "digits.yaml")
    breaker(service)
    applied = dry_run(cluster, in_namespace([service], namespace))
    assert applied.returncode != 0 and cluster_message in applied.stderr, applied.stderr
    checked = ksvc_check(yaml.safe_dump(service))
    assert checked.returncode == 1 and ksvc_check_message in checked.stdout, checked.stdout


def test_what_ksvc_check_cannot_see_a_missing_runtime_class(cluster: ClusterClient, namespace: str) -> None:
    """The webhook dry-runs the Revision's Pod against the apiserver, whose admission refuses an unknown
    RuntimeClass; ksvc-check validates the Service alone and accepts it."""
    cluster.kubectl("delete", "runtimeclass", "nvidia", "--ignore-not-found", check=False)
    path = ROOT / "tests" / "unit" / "golden" / "reranker-multigpu.yaml"
    (service,) = knative_services(path)
    assert service["spec"]["template"]["spec"].get("runtimeClassName") == "nvidia"
    applied = dry_run(cluster, in_namespace([service], namespace))
    assert applied.returncode != 0
    assert 'RuntimeClass "nvidia" not found' in applied.stderr, applied.stderr
    assert ksvc_check(yaml.safe_dump(service)).returncode == 0
