"""One node of the local cluster: its containerd, its CNI bridge and its kubelet (plus fake GPUs).

Each node has its own containerd (socket, state, root, runc root, CNI config), because a kubelet
removes every container its runtime holds that it did not create; both kubelets run in the host's
network namespace with their own ports, root directory and cgroup parent.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .layout import CLUSTER_DOMAIN, CNI_BIN_DIR, DNS_SERVICE_IP, NodeSpec

PAUSE_IMAGE = "localhost/aifn/pause:3.10"


def containerd_config(node: NodeSpec) -> str:
    """containerd 1.6 configuration (TOML) for `node`'s own instance.

    restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE, so runc cannot set the -998 the
    kubelet asks for a sandbox (platform-facts C5); this clamps it to what we may set.
    """
    return f'''version = 2
root = "{node.containerd_root}"
state = "{node.run_dir / 'containerd-state'}"
oom_score = 0

[grpc]
  address = "{node.containerd_socket}"

[ttrpc]
  address = "{node.run_dir / 'containerd.sock.ttrpc'}"

[debug]
  level = "warn"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{node.runc_root}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{node.run_dir / 'cni'}"
    max_conf_num = 1

[plugins."io.containerd.internal.v1.opt"]
  path = "{node.data_dir / 'opt'}"
'''


def cni_config(node: NodeSpec) -> dict:
    """A bridge network with host-local addresses from the node's /24, masquerading off-cluster traffic."""
    return {
        "cniVersion": "1.0.0",
        "name": f"aifn-{node.name}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(node.run_dir / "cni-ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(node: NodeSpec, ca_file: Path) -> dict:
    """KubeletConfiguration for `node`.

    cgroup v1 on this kernel (failCgroupV1: false) with the cgroupfs driver; webhook authn/authz
    so the apiserver's client certificate, not anonymous callers, may use logs/exec/port-forward;
    eviction thresholds off (a shared development disk is often past 85%).
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.kubelet_healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_root,
        "cgroupsPerQOS": True,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "podCIDR": node.pod_cidr,
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "registerWithTaints": [dict(t) for t in node.taints],
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 60,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "protectKernelDefaults": False,
        "makeIPTablesUtilChains": False,
        "localStorageCapacityIsolation": True,
        "containerLogMaxSize": "10Mi",
        # Each node's own pod logs: two kubelets on one host sharing /var/log/pods emptied each
        # other's container logs (kubectl logs came back empty, seen during a benchmark run).
        "podLogsDir": str(node.data_dir / "pod-logs"),
        "shutdownGracePeriod": "0s",
    }


def create_cgroups(node: NodeSpec, base: Path = Path("/sys/fs/cgroup")) -> list[Path]:
    """Create the node's cgroup parent in every hierarchy (the kubelet refuses a missing cgroupRoot).

    cgroup v1's cpuset starts a new group with no CPUs or memory nodes; it gets its parent's.
    """
    name = node.cgroup_root.strip("/")
    if (base / "cgroup.controllers").exists():  # cgroup v2: one hierarchy
        hierarchies = [base]
    else:
        hierarchies = [h for h in base.iterdir() if h.is_dir() and not h.is_symlink()]
    made = []
    for hierarchy in hierarchies:
        group = hierarchy / name
        group.mkdir(exist_ok=True)
        for key in ("cpuset.cpus", "cpuset.mems"):
            if (group / key).exists() and not (group / key).read_text().strip():
                (group / key).write_text((hierarchy / key).read_text())
        made.append(group)
    return made


def write_node_files(node: NodeSpec, ca_file: Path) -> dict[str, Path]:
    """Write containerd's, CNI's and the kubelet's configuration; return their paths."""
    for directory in (node.run_dir / "cni", node.run_dir / "cni-ipam", node.kubelet_dir, node.containerd_root):
        directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "containerd": node.run_dir / "containerd.toml",
        "cni": node.run_dir / "cni" / "10-aifn.conflist",
        "kubelet": node.run_dir / "kubelet-config.yaml",
    }
    paths["containerd"].write_text(containerd_config(node))
    paths["cni"].write_text(json.dumps(cni_config(node), indent=2))
    paths["kubelet"].write_text(yaml.safe_dump(kubelet_config(node, ca_file), sort_keys=False))
    return paths


def kubelet_argv(kubelet: Path, node: NodeSpec, config: Path, kubeconfig: Path) -> list[str]:
    """The kubelet command line for `node` (everything else is in its config file)."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(node.labels.items()))
    return [
        str(kubelet),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.kubelet_dir}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.ip}",
        *([f"--node-labels={labels}"] if labels else []),
        "--v=1",
    ]


def containerd_argv(node: NodeSpec, config: Path) -> list[str]:
    return ["containerd", f"--config={config}"]


def device_plugin_argv(plugin: Path, node: NodeSpec) -> list[str]:
    """The fake-GPU device plugin for `node`, registering with its kubelet's device-plugins directory."""
    return [str(plugin), f"--registry-dir={node.kubelet_dir / 'plugins_registry'}", f"--count={node.gpus}"]
