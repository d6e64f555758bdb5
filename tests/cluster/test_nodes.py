"""The cluster is real: two nodes shaped like kind-config.yaml, pods on both, Services by DNS name,
kubectl logs/exec/port-forward, GPUs counted by the real scheduler from a device plugin."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from typing import Any

import pytest

from support.cluster.cluster import BUSYBOX_IMAGE
from support.cluster.layout import GPU_LABELS, GPU_TAINT, NODES
from support.controlplane import BIN
from support.processes import free_port

from .conftest import ClusterClient

pytestmark = pytest.mark.cluster
CPU_NODE, GPU_NODE = NODES
GPU_TOLERATION = {"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}
HARDENED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}}


def busybox_pod(name: str, script: str, node_role: str = "cpu", labels: dict[str, str] | None = None,
                gpus: int = 0, port: int | None = None) -> dict[str, Any]:
    """A non-root, read-only pod running `script` in busybox's sh on the node with that role."""
    container: dict[str, Any] = {
        "name": "main",
        "image": BUSYBOX_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/busybox", "sh", "-c", script],
        "securityContext": HARDENED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    if port:
        container["ports"] = [{"containerPort": port}]
        container["readinessProbe"] = {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1}
    if gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
        "nodeSelector": {"aifn.dev/e2e-node": node_role},
        "terminationGracePeriodSeconds": 1,
    }
    if node_role == "gpu":
        spec["tolerations"] = [GPU_TOLERATION]
        spec["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}},
            "spec": spec}


def http_server_script(port: int) -> str:
    return (f"mkdir -p /tmp/www && echo \"hello from $(busybox hostname)\" > /tmp/www/index.html "
            f"&& exec busybox httpd -f -p {port} -h /tmp/www")


def test_two_ready_nodes_shaped_like_kind_config(cluster: ClusterClient) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.get("nodes")["items"]}
    assert set(nodes) >= {CPU_NODE.name, GPU_NODE.name}
    for node in nodes.values():
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", node["metadata"]["name"]
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
        assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.35.4"
    gpu = nodes[GPU_NODE.name]
    assert {k: gpu["metadata"]["labels"].get(k) for k in GPU_LABELS} == GPU_LABELS
    assert GPU_TAINT in [{k: t[k] for k in ("key", "value", "effect")} for t in gpu["spec"].get("taints", [])]
    # From the device plugin over the kubelet's device-plugin API, not a status patch.
    assert gpu["status"]["capacity"]["nvidia.com/gpu"] == "2"
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    cpu = nodes[CPU_NODE.name]
    assert "nvidia.com/gpu" not in cpu["status"]["allocatable"]
    assert not [t for t in cpu["spec"].get("taints", []) if t["effect"] == "NoSchedule"]


def test_pods_on_both_nodes_reach_a_service_by_its_dns_name(cluster: ClusterClient, namespace: str) -> None:
    server = busybox_pod("web", http_server_script(8080), node_role="cpu", port=8080)
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}
    fqdn = f"web.{namespace}.svc.cluster.local"
    client = busybox_pod("client", f"until busybox wget -qO- http://{fqdn}/; do sleep 1; done; "
                                   f"busybox nslookup {fqdn} 2>&1; sleep 3600", node_role="gpu")
    for manifest in (server, service, client):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    web = cluster.wait_pod_ready(namespace, "web")
    assert web["spec"]["nodeName"] == CPU_NODE.name
    running = cluster.wait_pod_phase(namespace, "client")
    assert running["spec"]["nodeName"] == GPU_NODE.name

    def answered() -> str | None:
        logs = cluster.kubectl("logs", "-n", namespace, "client", check=False).stdout
        return logs if "hello from web" in logs and "Address" in logs.split("hello from web", 1)[1] else None

    logs = cluster.wait_for("the client pod on the GPU worker to fetch http://web by DNS", answered, 90,
                            lambda: cluster.kubectl("logs", "-n", namespace, "client", check=False).stdout)
    cluster_ip = cluster.get("service", "web", "-n", namespace)["spec"]["clusterIP"]
    assert cluster_ip in logs, f"nslookup {fqdn} should answer the ClusterIP {cluster_ip}:\n{logs}"

    # From the host too: kube-proxy's rules serve ClusterIPs to this machine's own processes.
    with urllib.request.urlopen(f"http://{cluster_ip}/", timeout=10) as response:
        assert response.read().decode().strip() == "hello from web"


def test_kubectl_logs_exec_and_port_forward(cluster: ClusterClient, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=json.dumps(busybox_pod("web", "echo started; " + http_server_script(8080), port=8080)))
    cluster.wait_pod_ready(namespace, "web")
    assert "started" in cluster.kubectl("logs", "-n", namespace, "web").stdout
    exec_out = cluster.kubectl("exec", "-n", namespace, "web", "--", "/bin/busybox", "id", "-u").stdout
    assert exec_out.strip() == "65534"

    local_port = free_port()
    forward = subprocess.Popen(
        [str(BIN / "kubectl"), f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n", namespace, "pod/web",
         f"{local_port}:8080"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        def fetched() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local_port}/", timeout=3) as response:
                    return response.read().decode()
            except OSError:
                return None

        body = cluster.wait_for("kubectl port-forward to answer", fetched, 30)
        assert body.strip() == "hello from web"
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_a_gpu_pod_runs_on_the_gpu_worker_and_an_over_request_stays_pending(
    cluster: ClusterClient, namespace: str
) -> None:
    one = busybox_pod("one-gpu", "busybox env | busybox grep NVIDIA_VISIBLE_DEVICES; sleep 3600",
                      node_role="gpu", gpus=1)
    too_many = busybox_pod("three-gpus", "sleep 3600", node_role="gpu", gpus=3)
    for manifest in (one, too_many):
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    running = cluster.wait_pod_phase(namespace, "one-gpu")
    assert running["spec"]["nodeName"] == GPU_NODE.name
    logs = cluster.wait_for("the device plugin's allocation in the container's environment",
                            lambda: cluster.kubectl("logs", "-n", namespace, "one-gpu", check=False).stdout, 30)
    assert logs.startswith("NVIDIA_VISIBLE_DEVICES=fake-gpu-"), logs

    def unschedulable() -> dict[str, Any] | None:
        pod = cluster.pod(namespace, "three-gpus")
        for condition in pod.get("status", {}).get("conditions", []):
            if condition["type"] == "PodScheduled" and condition.get("reason") == "Unschedulable":
                return condition
        return None

    condition = cluster.wait_for("the scheduler to refuse three GPUs", unschedulable, 60)
    assert "Insufficient nvidia.com/gpu" in condition["message"], condition
    time.sleep(2)
    assert cluster.pod(namespace, "three-gpus")["status"]["phase"] == "Pending"
