"""kind-config.yaml is a kind Cluster config with what the e2e relies on (runs without Docker).

The e2e tests (tests/e2e) need Docker; this file checks the config's shape in the unit tier,
so a broken port, mount, label or taint shows up on every machine.
"""

from __future__ import annotations

from typing import Any

import yaml

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
E2E_CLUSTER = (ROOT / "tests" / "e2e" / "cluster.py").read_text()


def e2e_constant(name: str) -> str:
    """A constant of tests/e2e/cluster.py, read as text (that module is only imported by the e2e tier)."""
    match = re.search(rf'^{name} = "?([^"\n]+)"?', E2E_CLUSTER, re.MULTILINE)
    assert match, f"{name} not found in tests/e2e/cluster.py"
    return match.group(1).split("  #")[0].strip()


KOURIER_NODE_PORT = int(e2e_constant("KOURIER_NODE_PORT"))
GPU_NODE_LABEL = e2e_constant("GPU_NODE_LABEL")
GPU_PRODUCT = e2e_constant("GPU_PRODUCT")

CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
# Fields of kind's v1alpha4 Cluster and Node (sigs.k8s.io/kind/pkg/apis/config/v1alpha4) that may appear.
CLUSTER_FIELDS = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches", "containerdConfigPatchesJSON6902"}
NODE_FIELDS = {"role", "image", "labels", "extraMounts", "extraPortMappings", "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902"}
MOUNT_FIELDS = {"containerPath", "hostPath", "readOnly", "selinuxRelabel", "propagation"}
PORT_FIELDS = {"containerPort", "hostPort", "listenAddress", "protocol"}


def test_is_a_kind_cluster_config_with_known_fields_only() -> None:
    assert CONFIG["kind"] == "Cluster" and CONFIG["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(CONFIG) <= CLUSTER_FIELDS, set(CONFIG) - CLUSTER_FIELDS
    for node in CONFIG["nodes"]:
        assert set(node) <= NODE_FIELDS, set(node) - NODE_FIELDS
        assert node["role"] in ("control-plane", "worker")
        for mount in node.get("extraMounts", []):
            assert set(mount) <= MOUNT_FIELDS, set(mount) - MOUNT_FIELDS
        for port in node.get("extraPortMappings", []):
            assert set(port) <= PORT_FIELDS, set(port) - PORT_FIELDS
    assert [n["role"] for n in CONFIG["nodes"]] == ["control-plane", "worker", "worker"]


def test_kourier_node_port_is_published_on_loopback() -> None:
    mappings = CONFIG["nodes"][0]["extraPortMappings"]
    assert {"containerPort": KOURIER_NODE_PORT, "hostPort": KOURIER_NODE_PORT, "listenAddress": "127.0.0.1", "protocol": "TCP"} in mappings


def test_gpu_worker_is_labelled_and_tainted_like_a_gpu_node() -> None:
    key, value = GPU_NODE_LABEL.split("=")
    gpu_nodes = [n for n in CONFIG["nodes"] if n.get("labels", {}).get(key) == value]
    assert len(gpu_nodes) == 1
    node = gpu_nodes[0]
    assert node["labels"]["nvidia.com/gpu.product"] == GPU_PRODUCT
    patches = [yaml.safe_load(p) for p in node["kubeadmConfigPatches"]]
    taints = [t for p in patches if p["kind"] == "JoinConfiguration" for t in p["nodeRegistration"]["taints"]]
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in taints
    cpu_workers = [n for n in CONFIG["nodes"] if n["role"] == "worker" and n is not node]
    assert cpu_workers and not any("kubeadmConfigPatches" in n for n in cpu_workers), "Knative and CPU functions need an untainted worker"


def test_every_node_mounts_the_model_repository_read_only() -> None:
    for node in CONFIG["nodes"]:
        assert {"hostPath": "./model_repo", "containerPath": "/aifn/model_repo", "readOnly": True} in node["extraMounts"]
    assert (ROOT / "model_repo" / "digits" / "config.pbtxt").exists()
