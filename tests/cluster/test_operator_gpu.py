"""The operator against the real scheduler: a GPU function whose pods cannot be placed says WaitingForGPUNode
with the scheduler's own message; one that fits lands on the GPU worker.

Knative Serving is not on this cluster yet (the next issue), so the pod a Revision would create
is created here from the Knative Service's template as the operator rendered it (its containers,
resources, node selector and tolerations unchanged, with the labels Knative puts on it). The
scheduling decision and its message are the real kube-scheduler's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster.layout import NODES
from support.kube_client import TestClient, condition, function
from support.operator_process import OperatorProcess, wait_for

from .conftest import ClusterClient
from .revisions import revision_pod

pytestmark = pytest.mark.cluster
GPU_NODE = NODES[1]


@pytest.fixture
def operator(cluster: ClusterClient, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """`aifn operator` on the host, watching the test namespace (also its Knative-settings namespace)."""
    kube = TestClient(cluster.kubeconfig)
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "enabled",
                                                      "kubernetes.podspec-nodeselector": "enabled"})
    op = OperatorProcess(cluster.kubeconfig, tmp_path / "operator.log",
                         [f"--namespace={namespace}", f"--knative-namespace={namespace}", "--standalone"])
    op.start()
    yield op
    op.stop()
    print(op.log_tail())


def gpu_function(name: str, gpus: int) -> dict[str, Any]:
    return function(name, {
        "model": {"name": "digits", "repository": "s3://models/triton"},
        "resources": {"gpu": {"count": gpus, "product": "NVIDIA-L4"}},
        "scaling": {"minReplicas": 0, "maxReplicas": 1},
    })


def test_waiting_for_gpu_node_comes_from_the_real_scheduler(
    cluster: ClusterClient, namespace: str, operator: OperatorProcess
) -> None:
    kube = TestClient(cluster.kubeconfig)
    kube.create_function(namespace, gpu_function("big", gpus=3))
    kube.create_function(namespace, gpu_function("fits", gpus=1))
    services = {name: wait_for(f"Knative Service {name}", lambda name=name: kube.get_service(namespace, name), 30)
                for name in ("big", "fits")}
    for name, service in services.items():
        cluster.kubectl("apply", "-n", namespace, "-f", "-",
                        input=json.dumps(revision_pod(service, f"{name}-00001-deployment-0")))

    def scheduler_refusal() -> str | None:
        pod = cluster.pod(namespace, "big-00001-deployment-0")
        for cond in pod.get("status", {}).get("conditions", []):
            if cond["type"] == "PodScheduled" and cond.get("reason") == "Unschedulable":
                return cond["message"]
        return None

    message = cluster.wait_for("the scheduler to refuse 3 GPUs", scheduler_refusal, 60)
    assert "Insufficient nvidia.com/gpu" in message

    def waiting(fn_name: str) -> dict[str, Any] | None:
        fn = kube.get_function(namespace, fn_name)
        return fn if fn and (fn.get("status") or {}).get("reason") == "WaitingForGPUNode" else None

    fn = wait_for("AIFunction big: WaitingForGPUNode", lambda: waiting("big"), 30, on_timeout=operator.log_tail)
    scheduled = condition(fn, "PodsScheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "WaitingForGPUNode"
    assert scheduled["message"] == scheduler_refusal(), "the function shows the scheduler's own words"
    assert condition(fn, "Ready")["reason"] == "WaitingForGPUNode"

    placed = cluster.wait_for("the 1-GPU pod to be scheduled",
                              lambda: cluster.pod(namespace, "fits-00001-deployment-0")["spec"].get("nodeName"), 60)
    assert placed == GPU_NODE.name
    fits = kube.get_function(namespace, "fits")
    assert (fits.get("status") or {}).get("reason") != "WaitingForGPUNode"
