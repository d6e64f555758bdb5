"""The local cluster: control plane + kube-scheduler + kube-proxy + two nodes (containerd + kubelet) + CoreDNS.

`Cluster().start()` checks the host, cleans what a killed run left, sets up the network, starts
every component, imports the images every node needs, waits until both nodes are Ready (the GPU
worker with its nvidia.com/gpu allocatable) and CoreDNS answers, and writes the admin kubeconfig to
.aifn/cluster/kubeconfig. With `stack=True` it then installs Knative Serving, the networking layer,
Knative Eventing and the operator (support.cluster.stack). `stop()` removes everything it made (cleanup.clean).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from ..controlplane import BIN, ControlPlane, Network
from ..processes import Component, http_ok, wait_until
from . import addons, cleanup, eventing, gateway, host, images, knative, node as nodes, stack as stacks
from .layout import (
    APISERVER_PORT,
    CONTROL_PLANE_IP,
    DATA_DIR,
    KUBECONFIG,
    NODES,
    POD_CIDR,
    RUN_DIR,
    SERVICE_CIDR,
    USER_DIR,
    NodeSpec,
)

APISERVER_KUBELET_CLIENT = "kube-apiserver-kubelet-client"
IMAGE_SOURCES = Path(__file__).resolve().parents[3] / "images"


OWNER_FILE = RUN_DIR / "owner.pid"


class ClusterRunning(RuntimeError):
    """A cluster is already running on this host."""


def running_owner() -> int | None:
    """The pid of the live process that started this host's cluster (make cluster, a test session), if any."""
    try:
        pid = int(OWNER_FILE.read_text())
    except (OSError, ValueError):
        return None
    return pid if Path(f"/proc/{pid}").exists() and pid != os.getpid() else None


def _binaries(bin_dir: Path) -> dict[str, Path]:
    names = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
             "kubectl", "coredns", "gpu-device-plugin")
    return {name: bin_dir / name for name in names}


def coredns_version(bin_dir: Path = BIN) -> str:
    """CoreDNS's version, from the tools module that builds it (its image tag)."""
    go_mod = (bin_dir.parent / "hack" / "tools" / "coredns" / "go.mod").read_text()
    for line in go_mod.splitlines():
        if "github.com/coredns/coredns" in line and line.strip().startswith(("require", "github.com")):
            return line.split()[-1].lstrip("v")
    raise RuntimeError("no github.com/coredns/coredns version in hack/tools/coredns/go.mod")


def pause_image_spec(work: Path) -> images.ImageSpec:
    """The sandbox image: a static pause program compiled here from images/pause/pause.c."""
    source = IMAGE_SOURCES / "pause" / "pause.c"
    binary = work / "pause"
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        work.mkdir(parents=True, exist_ok=True)
        host.run("gcc", "-static", "-O2", "-Wall", "-s", "-o", str(binary), str(source))
    return images.ImageSpec(name=nodes.PAUSE_IMAGE, files=(images.ImageFile(binary, "/pause", 0o755),),
                            entrypoint=("/pause",), user="65535:65535")


def coredns_image_spec(bin_dir: Path) -> images.ImageSpec:
    """CoreDNS built from its Go module: one static binary."""
    binary = (bin_dir / "coredns").resolve()
    return images.ImageSpec(name=addons.COREDNS_IMAGE.format(version=coredns_version(bin_dir)),
                            files=(images.ImageFile(binary, "/coredns", 0o755),), entrypoint=("/coredns",),
                            user="65532:65532")


BUSYBOX_IMAGE = "localhost/aifn/busybox:1.35"


def busybox_image_spec() -> images.ImageSpec:
    """A small tool image (sh, httpd, wget, nslookup) from Debian's static busybox, for tests and debugging."""
    binary = Path("/bin/busybox").resolve()
    return images.ImageSpec(name=BUSYBOX_IMAGE, files=(images.ImageFile(binary, "/bin/busybox", 0o755),),
                            entrypoint=("/bin/busybox",), cmd=("sh",), user="65534:65534",
                            env=("PATH=/bin",))


class Cluster:
    """A whole cluster on this machine; use as a context manager or start()/stop()."""

    def __init__(self, bin_dir: Path = BIN, log: Callable[[str], None] = print,
                 extra_images: tuple[images.ImageSpec, ...] = (), app_images: bool = False,
                 stack: bool = False) -> None:
        """`app_images`: also build and load the operator and Triton images; `stack`: also install
        Knative Serving, the networking layer and the operator (implies app_images; what `make cluster` does)."""
        self.bin_dir = bin_dir
        self.stack = stack
        self.app_images = app_images or stack
        self.binaries = _binaries(bin_dir)
        self.log = log
        self.extra_images = extra_images
        self.plane: ControlPlane | None = None
        self.components: dict[str, Component] = {}
        self.kubeconfig = KUBECONFIG
        self.timings: dict[str, float] = {}
        self.gateway_url: str | None = None
        self._owns_host = False

    # Lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Bring the whole cluster up; raises HostProblem or ClusterRunning with what to do."""
        started = time.monotonic()
        self._refuse_if_running()
        host.preflight(self.binaries)
        self._owns_host = True  # from here on, stop() removes whatever this start made
        self._clean_leftovers()
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        OWNER_FILE.write_text(str(os.getpid()))
        self._step("network", host.set_up_network)
        host.link_model_repo(IMAGE_SOURCES.parent / "model_repo")
        self._step("control plane", self._start_control_plane)
        self._step("scheduler", self._start_scheduler)
        archives = self._step("images", self._build_images)
        for node in NODES:
            self._step(f"node {node.name}", lambda node=node: self._start_node(node, archives))
        self._step("kube-proxy", self._start_proxy)  # it waits for its node to be registered
        self._step("nodes Ready", self._wait_nodes_ready)
        self._step("CoreDNS", self._install_addons)
        USER_DIR.mkdir(parents=True, exist_ok=True)
        assert self.plane is not None
        shutil.copyfile(self.plane.kubeconfig, self.kubeconfig)
        self.kubeconfig.chmod(0o600)
        if self.stack:
            self._install_stack()
        self.timings["total"] = time.monotonic() - started

    def stop(self) -> None:
        """Stop every component and remove what the cluster made on this host.

        A start refused before it changed anything (another cluster running, a host problem) owns
        nothing, so stopping it touches nothing.
        """
        if not self._owns_host:
            return
        for name in reversed(list(self.components)):
            self.components[name].stop(grace=5)
        if self.plane is not None:
            self.plane.stop()
        if self.log_dir.is_dir():  # kept for a look after the fact: .aifn/cluster/logs
            shutil.rmtree(USER_DIR / "logs", ignore_errors=True)
            shutil.copytree(self.log_dir, USER_DIR / "logs")
        left = cleanup.clean(log=self.log)
        self.kubeconfig.unlink(missing_ok=True)
        stacks.GATEWAY_FILE.unlink(missing_ok=True)
        if left:
            self.log(f"cluster: could not remove {left.summary()}; run `make cluster-down`")

    def release(self) -> None:
        """Forget this cluster without stopping it (somebody else, e.g. `make cluster-down`, removes it)."""
        self._owns_host = False

    def dead_components(self) -> list[str]:
        """Names of components that have exited (a healthy cluster has none)."""
        everything = dict(self.components)
        if self.plane is not None:
            everything.update(self.plane.components)
        return [name for name, component in everything.items() if component.exit_code() is not None]

    def logs(self, max_bytes: int = 3000) -> str:
        parts = [self.plane.logs(max_bytes)] if self.plane else []
        for name, component in self.components.items():
            parts.append(f"----- {name} (exit {component.exit_code()}) -----\n{component.log_tail(max_bytes)}")
        return "\n".join(parts)

    @property
    def log_dir(self) -> Path:
        return DATA_DIR / "control-plane" / "logs"

    # Steps -------------------------------------------------------------------------------------

    def _step(self, what: str, action: Callable[[], object]) -> object:
        began = time.monotonic()
        result = action()
        self.timings[what] = time.monotonic() - began
        self.log(f"cluster: {what} ready in {self.timings[what]:.1f}s")
        return result

    def _refuse_if_running(self) -> None:
        """Refuse when the process that started the cluster on this host is still alive.

        A cluster whose starter died (killed, crashed) is a leftover, cleaned by the next start.
        """
        owner = running_owner()
        if owner is not None:
            raise ClusterRunning(
                f"a cluster is already running on this host (started by pid {owner}, kubeconfig "
                f"{KUBECONFIG}); use it, or stop it with `make cluster-down`"
            )

    def _clean_leftovers(self) -> None:
        found = cleanup.find_leftovers()
        if not found:
            return
        self.log(f"cluster: cleaning what an earlier run left: {found.summary()}")
        left = cleanup.clean(log=self.log)
        if left:
            raise host.HostProblem(f"could not clean an earlier run's {left.summary()}; run `make cluster-down`")

    def _start_control_plane(self) -> None:
        workdir = DATA_DIR / "control-plane"
        workdir.mkdir(parents=True, exist_ok=True)
        network = Network(
            bind_address=CONTROL_PLANE_IP,
            port=APISERVER_PORT,
            service_cidr=SERVICE_CIDR,
            controllers=("*",),
            authorization_mode="Node,RBAC",
            extra_apiserver_args=(
                "--endpoint-reconciler-type=lease",
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-admission-plugins=NodeRestriction",
            ),
            extra_controller_manager_args=(f"--cluster-cidr={POD_CIDR}", "--node-monitor-grace-period=20s"),
            kubelet_client_user=APISERVER_KUBELET_CLIENT,
        )
        self.plane = ControlPlane(workdir=workdir, network=network, start_timeout=90)
        self.plane.start()
        self.plane.kubectl("apply", "--server-side", "--field-manager=aifn-cluster", "-f", "-",
                           input=json.dumps(addons.apiserver_kubelet_access(APISERVER_KUBELET_CLIENT)))

    def _component(self, name: str, argv: list[str]) -> Component:
        log_dir = self.log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        component = Component(name, argv, log_dir / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    def _start_scheduler(self) -> None:
        assert self.plane is not None
        scheduler_config = self.plane.client_kubeconfig("kube-scheduler", "system:kube-scheduler")
        scheduler = self._component("kube-scheduler", [
            str(self.binaries["kube-scheduler"]),
            f"--kubeconfig={scheduler_config}",
            f"--authentication-kubeconfig={scheduler_config}",
            f"--authorization-kubeconfig={scheduler_config}",
            "--authentication-skip-lookup=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=10259",
            f"--cert-dir={DATA_DIR / 'control-plane' / 'kube-scheduler'}",
            "--v=1",
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; only /healthz is read
        wait_until("kube-scheduler /healthz", lambda: http_ok("https://127.0.0.1:10259/healthz", insecure), 60,
                   scheduler)

    def _start_proxy(self) -> None:
        assert self.plane is not None
        proxy_kubeconfig = self.plane.client_kubeconfig("kube-proxy", "system:kube-proxy")
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        proxy_config = RUN_DIR / "kube-proxy.yaml"
        proxy_config.write_text(yaml.safe_dump({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(proxy_kubeconfig)},
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODES[0].name,
            "bindAddress": CONTROL_PLANE_IP,
            "healthzBindAddress": "127.0.0.1:10256",
            "metricsBindAddress": "127.0.0.1:10249",
            "nodePortAddresses": [f"{CONTROL_PLANE_IP.rsplit('.', 1)[0]}.0/24"],  # our interface only
            "conntrack": {"maxPerCore": 0},  # leave the host's conntrack table size alone
            "iptables": {"syncPeriod": "10s", "minSyncPeriod": "0s"},
        }, sort_keys=False))
        proxy = self._component("kube-proxy", [str(self.binaries["kube-proxy"]), f"--config={proxy_config}", "--v=1"])
        wait_until("kube-proxy /healthz", lambda: http_ok("http://127.0.0.1:10256/healthz"), 60, proxy)

    def _build_images(self) -> dict[str, Path]:
        work = DATA_DIR / "build"
        specs = [pause_image_spec(work), coredns_image_spec(self.bin_dir), busybox_image_spec(), *self.extra_images]
        archives = {spec.name: images.build_archive(spec) for spec in specs}
        if self.app_images:
            from .operator_image import OPERATOR_IMAGE, operator_image_archive
            from .triton_image import triton_image_spec

            self.log("cluster: building the operator and Triton images (cached; a first build takes minutes)")
            archives[OPERATOR_IMAGE] = operator_image_archive(log=self.log)
            triton = triton_image_spec(log=self.log)
            archives[triton.name] = images.build_archive(triton)
        if self.stack:
            from .handler_image import HANDLER_IMAGE, handler_image_archive

            archives[HANDLER_IMAGE] = handler_image_archive(log=self.log)
        if self.stack:
            for component, archive in knative.build_images().items():
                archives[knative.image_name(component)] = archive
            archives[gateway.ENVOY_IMAGE] = images.build_archive(gateway.envoy_image_spec())
            for command, archive in eventing.build_images().items():
                archives[eventing.image_name(command)] = archive
        return archives

    def _start_node(self, node: NodeSpec, archives: dict[str, Path]) -> None:
        assert self.plane is not None
        paths = nodes.write_node_files(node, self.plane.ca.cert_path)
        nodes.create_cgroups(node)
        containerd = self._component(f"containerd-{node.name}", nodes.containerd_argv(node, paths["containerd"]))
        ctr = ["ctr", "--address", str(node.containerd_socket), "version"]
        wait_until(f"containerd of {node.name}",
                   lambda: subprocess.run(ctr, capture_output=True).returncode == 0, 60, containerd)
        for name, archive in archives.items():
            if node.gpus and name.startswith(eventing.IMAGE_REPOSITORY):
                continue  # Eventing's pods do not tolerate the GPU worker's taint
            if images.import_archive(archive, name, node.containerd_socket):
                self.log(f"cluster: imported {name} into {node.name}")
            if stacks.revision_image(name) != name:
                stacks.tag_for_revisions(name, node.containerd_socket)
        kubeconfig = self.plane.client_kubeconfig(f"kubelet-{node.name}", f"system:node:{node.name}",
                                                  groups=("system:nodes",))
        self._component(f"kubelet-{node.name}",
                        nodes.kubelet_argv(self.binaries["kubelet"], node, paths["kubelet"], kubeconfig))
        if node.gpus:
            self._component(f"gpu-device-plugin-{node.name}",
                            nodes.device_plugin_argv(self.binaries["gpu-device-plugin"], node))

    def _node_ready(self, node: NodeSpec) -> bool:
        assert self.plane is not None
        result = self.plane.kubectl("get", "node", node.name, "-o", "json", check=False)
        if result.returncode != 0:
            return False
        status = json.loads(result.stdout)
        spec_taints = status.get("spec", {}).get("taints", [])
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status["status"].get("conditions", []))
        not_ready_taint = any(t["key"].startswith("node.kubernetes.io/not-ready") for t in spec_taints)
        gpus = int(status["status"].get("allocatable", {}).get("nvidia.com/gpu", "0"))
        return ready and not not_ready_taint and gpus == node.gpus

    def _wait_nodes_ready(self) -> None:
        for node in NODES:
            kubelet = self.components[f"kubelet-{node.name}"]
            wait_until(f"node {node.name} Ready (untainted, {node.gpus} nvidia.com/gpu allocatable)",
                       lambda node=node: self._node_ready(node), 120, kubelet)

    def _install_addons(self) -> None:
        assert self.plane is not None
        manifests = addons.coredns(coredns_version(self.bin_dir))
        self.plane.kubectl("apply", "--server-side", "--field-manager=aifn-cluster", "-f", "-",
                           input="\n---\n".join(json.dumps(m) for m in manifests))
        self.plane.kubectl("rollout", "status", "-n", "kube-system", "deployment/coredns", "--timeout=120s",
                           timeout=130)

    def _install_stack(self) -> None:
        from ..helm import helm
        from .operator_image import OPERATOR_IMAGE
        from .handler_image import HANDLER_IMAGE
        from .triton_image import IMAGE_NAME as TRITON_IMAGE

        self._step("Knative Serving", lambda: stacks.install_knative(self.kubectl, self.log))
        url = self._step("networking layer", lambda: stacks.install_gateway(self.kubectl, OPERATOR_IMAGE))
        self._step("Knative Eventing", lambda: stacks.install_eventing(self.kubectl, self.log))
        self._step("operator (helm)", lambda: stacks.install_operator(
            lambda *args: helm(*args, kubeconfig=self.kubeconfig, timeout=240), OPERATOR_IMAGE, TRITON_IMAGE,
            HANDLER_IMAGE))
        self.gateway_url = url
        self.log(f"cluster: functions answer at {url} (Host: <name>.<namespace>.{knative.CLUSTER_DOMAIN})")

    # Clients -----------------------------------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """kubectl as the cluster's admin."""
        assert self.plane is not None
        return self.plane.kubectl(*args, input=input, check=check, timeout=timeout)
