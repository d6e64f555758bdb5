"""The local cluster's pure parts: node configurations, the firewall lines clean-up may remove, OCI archives."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from support.cluster import addons, images, node
from support.cluster.cleanup import _firewall_lines
from support.cluster.layout import DNS_SERVICE_IP, GPU_TAINT, NODES

CPU_NODE, GPU_NODE = NODES


def test_nodes_share_nothing_that_would_collide() -> None:
    for attribute in ("ip", "pod_cidr", "bridge", "kubelet_port", "kubelet_healthz_port", "containerd_socket",
                      "kubelet_dir", "cgroup_root", "run_dir"):
        values = [getattr(n, attribute) for n in NODES]
        assert len(set(values)) == len(values), attribute


@pytest.mark.parametrize("spec", NODES, ids=lambda n: n.name)
def test_kubelet_config(spec, tmp_path: Path) -> None:
    config = node.kubelet_config(spec, tmp_path / "ca.crt")
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == f"/{spec.name}"
    assert config["clusterDNS"] == [DNS_SERVICE_IP]
    assert config["containerRuntimeEndpoint"] == f"unix://{spec.containerd_socket}"
    assert config["authentication"]["anonymous"]["enabled"] is False and config["authorization"]["mode"] == "Webhook"
    assert config["registerWithTaints"] == ([GPU_TAINT] if spec.gpus else [])
    assert config["podLogsDir"] == str(spec.data_dir / "pod-logs")
    argv = node.kubelet_argv(Path("/bin/kubelet"), spec, tmp_path / "c.yaml", tmp_path / "k")
    assert f"--node-ip={spec.ip}" in argv and f"--root-dir={spec.kubelet_dir}" in argv


@pytest.mark.parametrize("spec", NODES, ids=lambda n: n.name)
def test_containerd_and_cni_config(spec) -> None:
    toml = node.containerd_config(spec)
    assert "restrict_oom_score_adj = true" in toml, "root lacks CAP_SYS_RESOURCE here (platform-facts C5)"
    assert f'address = "{spec.containerd_socket}"' in toml and f'sandbox_image = "{node.PAUSE_IMAGE}"' in toml
    assert f'Root = "{spec.runc_root}"' in toml
    cni = node.cni_config(spec)
    assert cni["plugins"][0]["bridge"] == spec.bridge
    assert cni["plugins"][0]["ipam"]["ranges"] == [[{"subnet": spec.pod_cidr}]]


def test_each_kubelet_keeps_its_own_pod_logs(tmp_path: Path) -> None:
    """Two kubelets sharing /var/log/pods emptied each other's container logs."""
    dirs = [node.kubelet_config(n, tmp_path / "ca.crt")["podLogsDir"] for n in NODES]
    assert len(set(dirs)) == len(dirs) and all(d.startswith("/var/lib/aifn-cluster/") for d in dirs)


def test_only_the_gpu_worker_runs_the_device_plugin() -> None:
    assert [n.name for n in NODES if n.gpus] == [GPU_NODE.name]
    argv = node.device_plugin_argv(Path("/bin/p"), GPU_NODE)
    assert f"--registry-dir={GPU_NODE.kubelet_dir / 'plugins_registry'}" in argv and "--count=2" in argv


IPTABLES_DUMP = """\
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:KUBE-FORWARD - [0:0]
:USER-CHAIN - [0:0]
-A INPUT -p tcp --dport 22 -m comment --comment "ssh, not KUBE-anything" -j ACCEPT
-A FORWARD -s 10.244.0.0/16 -o eth0 -m comment --comment aifn-cluster -j DROP
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A USER-CHAIN -j ACCEPT
COMMIT
*nat
:POSTROUTING ACCEPT [0:0]
:CNI-0123abcd - [0:0]
-A POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: aifn-aifn-worker" -j CNI-0123abcd
-A POSTROUTING -o eth0 -j MASQUERADE
-A CNI-0123abcd -d 10.244.0.0/24 -j ACCEPT
COMMIT
"""


def test_clean_up_removes_only_the_clusters_firewall_lines() -> None:
    ours = _firewall_lines(IPTABLES_DUMP)
    assert ours == [
        ":KUBE-FORWARD - [0:0]",
        "-A FORWARD -s 10.244.0.0/16 -o eth0 -m comment --comment aifn-cluster -j DROP",
        '-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD',
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        ":CNI-0123abcd - [0:0]",
        '-A POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: aifn-aifn-worker" -j CNI-0123abcd',
        "-A CNI-0123abcd -d 10.244.0.0/24 -j ACCEPT",
    ]


def test_coredns_serves_the_cluster_domain_and_forwards_nothing() -> None:
    objects = addons.coredns("1.14.7")
    service = next(o for o in objects if o["kind"] == "Service")
    assert service["spec"]["clusterIP"] == DNS_SERVICE_IP
    corefile = next(o for o in objects if o["kind"] == "ConfigMap")["data"]["Corefile"]
    assert "kubernetes cluster.local" in corefile and "forward" not in corefile
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["image"] == "localhost/aifn/coredns:1.14.7"


def _archive_manifest(archive: Path) -> tuple[dict, dict, tarfile.TarFile]:
    tar = tarfile.open(archive)
    index = json.load(tar.extractfile("index.json"))
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(tar.extractfile(f"blobs/sha256/{digest}"))
    return index, manifest, tar


def test_oci_archives_are_deterministic_and_hold_the_files(tmp_path: Path) -> None:
    program = tmp_path / "hello"
    program.write_text("#!/bin/sh\necho hi\n")
    spec = images.ImageSpec(name="localhost/aifn/test:1", files=(images.ImageFile(program, "/usr/bin/hello", 0o755),),
                            entrypoint=("/usr/bin/hello",), user="65532:65532")
    first = images.build_archive(spec, cache=tmp_path / "a")
    second = images.build_archive(spec, cache=tmp_path / "b")
    assert images.archive_manifest_digest(first) == images.archive_manifest_digest(second)
    index, manifest, tar = _archive_manifest(first)
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "localhost/aifn/test:1"
    layer = tarfile.open(fileobj=tar.extractfile(f"blobs/sha256/{manifest['layers'][0]['digest'].split(':')[1]}"))
    member = layer.getmember("usr/bin/hello")
    assert member.mode == 0o755 and member.uid == 0 and member.mtime == 0
    config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"))
    assert config["config"]["User"] == "65532:65532" and config["rootfs"]["diff_ids"] == [manifest["layers"][0]["digest"]]

    before = spec.input_hash()
    program.write_text("#!/bin/sh\necho changed\n")
    assert spec.input_hash() != before, "the hash covers the files' content"
    changed = images.build_archive(spec, cache=tmp_path / "a")
    assert changed != first, "a changed input makes a new archive"


def _fake_host(root: Path, filesystems: str = "nodev\toverlay\n", bridge_nf: bool = True,
               controllers: tuple[str, ...] = ("cpu", "memory", "pids", "cpuset")) -> tuple[Path, Path]:
    proc, cgroup = root / "proc", root / "cgroup"
    (proc / "self" / "ns").mkdir(parents=True)
    (proc / "self" / "ns" / "net").touch()
    (proc / "filesystems").write_text(filesystems)
    if bridge_nf:
        (proc / "sys" / "net" / "bridge").mkdir(parents=True)
        (proc / "sys" / "net" / "bridge" / "bridge-nf-call-iptables").write_text("0\n")
    for controller in controllers:
        (cgroup / controller).mkdir(parents=True)
    cgroup.mkdir(exist_ok=True)
    return proc, cgroup


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ({}, []),
        ({"filesystems": "nodev\ttmpfs\n"}, ["`modprobe overlay`"]),
        ({"bridge_nf": False}, ["`modprobe br_netfilter`"]),
        ({"controllers": ("cpu", "memory", "cpuset")}, ["cgroup v1 controller `pids` is not mounted"]),
    ],
    ids=["complete", "no-overlay", "no-br-netfilter", "no-pids-cgroup"],
)
def test_missing_kernel_features_are_named_with_what_to_do(tmp_path: Path, host: dict, expected: list[str]) -> None:
    from support.cluster.host import kernel_problems

    problems = kernel_problems(*_fake_host(tmp_path, **host))
    assert len(problems) == len(expected), problems
    for problem, words in zip(problems, expected):
        assert words in problem


def test_nodes_are_shaped_like_kind_config() -> None:
    """The same labels and taints as kind-config.yaml's workers, so manifests for one run on the other."""
    import yaml

    kind = yaml.safe_load((Path(__file__).resolve().parents[2] / "kind-config.yaml").read_text())
    workers = [n for n in kind["nodes"] if n["role"] == "worker"]
    assert [w["labels"] for w in workers] == [n.labels for n in NODES]
    kind_taints = [yaml.safe_load(patch)["nodeRegistration"].get("taints", [])
                   for w in workers for patch in w.get("kubeadmConfigPatches", [])] or [[]]
    assert [list(n.taints) for n in NODES if n.taints] == kind_taints
