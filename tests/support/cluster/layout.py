"""Where everything of the local cluster lives: nodes, addresses, directories. Pure data.

One cluster per machine (it binds fixed addresses and is root's): two nodes shaped like
kind-config.yaml, a CPU worker and a GPU worker, each a kubelet with its own containerd, pod
bridge and subnet, all in the host's network namespace (drawn in docs/cluster.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# Addresses. The control plane and the nodes get addresses on an interface of their own (a bridge
# without ports, used as a dummy interface), so
# nothing binds the host's real interfaces and `make cluster-down` removes them all at once. Pod and
# Service traffic stays on this machine: pods live in network namespaces on our bridges, ClusterIPs
# are rewritten by kube-proxy's iptables rules to those pods, and CoreDNS forwards nothing outside.
DUMMY_INTERFACE = "aifn0"
CONTROL_PLANE_IP = "172.31.255.1"
APISERVER_PORT = 6443
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/24"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"

# Directories: runtime state (sockets, runc state, pod network namespaces) on /run, node data in
# /var/lib (containerd's image store is kept between runs as a cache), what users read in .aifn/.
RUN_DIR = Path(os.environ.get("AIFN_CLUSTER_RUN_DIR", "/run/aifn-cluster"))
DATA_DIR = Path(os.environ.get("AIFN_CLUSTER_DATA_DIR", "/var/lib/aifn-cluster"))
USER_DIR = ROOT / ".aifn" / "cluster"
KUBECONFIG = USER_DIR / "kubeconfig"
CNI_BIN_DIR = Path("/usr/lib/cni")
# kind-config.yaml mounts model_repo/ at /aifn/model_repo on every node; here the nodes share the
# host's file system, so the same path is a link to this checkout's model_repo/.
MODEL_REPO_LINK = Path("/aifn/model_repo")

GPU_LABELS = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "NVIDIA-L4",
}
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class NodeSpec:
    """One node: a kubelet, its containerd and its pod subnet."""

    name: str
    index: int  # 0, 1, ...: picks the subnet, address and ports
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    gpus: int = 0  # fake nvidia.com/gpu devices its device plugin advertises

    @property
    def ip(self) -> str:
        """The node's InternalIP (on the dummy interface)."""
        return f"172.31.255.{10 + self.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def bridge(self) -> str:
        return f"aifn-cni{self.index}"

    @property
    def kubelet_port(self) -> int:
        return 10250 + 10 * self.index

    @property
    def kubelet_healthz_port(self) -> int:
        return 10248 + 10 * self.index

    @property
    def run_dir(self) -> Path:
        """Sockets, runc state, pod network namespaces (tmpfs)."""
        return RUN_DIR / self.name

    @property
    def data_dir(self) -> Path:
        return DATA_DIR / self.name

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def containerd_root(self) -> Path:
        """containerd's content and snapshots: kept between runs, so images are imported once."""
        return self.data_dir / "containerd"

    @property
    def kubelet_dir(self) -> Path:
        """The kubelet's --root-dir (pod volumes, device-plugin sockets); removed by cluster-down."""
        return self.data_dir / "kubelet"

    @property
    def runc_root(self) -> Path:
        return self.run_dir / "runc"

    @property
    def cgroup_root(self) -> str:
        """This node's cgroup parent, so the two kubelets' pods never share one."""
        return f"/{self.name}"


NODES: tuple[NodeSpec, ...] = (
    NodeSpec(name="aifn-worker", index=0, labels={"aifn.dev/e2e-node": "cpu"}),
    NodeSpec(
        name="aifn-gpu-worker",
        index=1,
        labels={**GPU_LABELS, "aifn.dev/e2e-node": "gpu"},
        taints=(GPU_TAINT,),
        gpus=2,
    ),
)
