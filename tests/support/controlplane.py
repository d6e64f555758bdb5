"""A real Kubernetes control plane on loopback: etcd, kube-apiserver (RBAC) and kube-controller-manager.

Like controller-runtime's envtest, but with the controller manager too, so ownerReference
garbage collection, namespace deletion, ServiceAccounts and their tokens work as in a cluster.
Binaries come from `make tools` (bin/); CRDs are installed and waited for before `start()` returns.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import shutil
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .pki import CertificateAuthority, KeyPair, service_account_keys
from .processes import Component, free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / "bin"
COMPONENT_NAMES = ("etcd", "kube-apiserver", "kube-controller-manager")

# What kube-controller-manager runs: GC, namespace lifecycle, service accounts and their tokens,
# the kube-root-ca.crt ConfigMaps and aggregated ClusterRoles (admin/edit/view pick up CRD rules).
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller",
)


@dataclass(frozen=True)
class Network:
    """Where the control plane listens and what it serves; the default is the loopback-only test plane.

    A cluster with nodes (support.cluster) binds a non-loopback address that pods can reach, fixes
    the port, runs every controller and authorizes kubelets (Node authorizer).
    """

    bind_address: str = "127.0.0.1"
    port: int | None = None  # None: a free port
    service_cidr: str = "10.0.0.0/24"
    controllers: tuple[str, ...] = CONTROLLERS
    authorization_mode: str = "RBAC"
    extra_apiserver_args: tuple[str, ...] = ("--endpoint-reconciler-type=none",)  # 127.0.0.1 cannot be an endpoint
    extra_controller_manager_args: tuple[str, ...] = ()
    kubelet_client_user: str | None = None  # issue the apiserver a client cert for kubelets (logs, exec)

    @property
    def service_ip(self) -> str:
        """The `kubernetes` Service's ClusterIP: the first address of the service range."""
        return str(next(ipaddress.ip_network(self.service_cidr).hosts()))


class MissingBinaries(RuntimeError):
    """The control-plane binaries are not built."""


@dataclass(frozen=True)
class Binaries:
    """Paths of the binaries the control plane runs."""

    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path

    @classmethod
    def find(cls, bin_dir: Path = BIN) -> Binaries:
        """The binaries in `bin_dir` (kubectl may also come from PATH); raise MissingBinaries if absent."""
        names = {"etcd": "etcd", "kube_apiserver": "kube-apiserver", "kube_controller_manager": "kube-controller-manager"}
        found = {field: bin_dir / name for field, name in names.items()}
        missing = [str(path) for path in found.values() if not (path.exists() and path.stat().st_mode & 0o111)]
        kubectl = bin_dir / "kubectl"
        if not kubectl.exists():
            on_path = shutil.which("kubectl")
            if on_path is None:
                missing.append(f"{kubectl} (or kubectl on PATH)")
            kubectl = Path(on_path or kubectl)
        if missing:
            raise MissingBinaries(f"control-plane binaries missing: {', '.join(missing)}; run `make tools`")
        return cls(kubectl=kubectl, **found)


@dataclass(frozen=True)
class Identity:
    """A client identity: a kubeconfig that authenticates as `username`."""

    username: str
    kubeconfig: Path
    token: str | None = None


def default_crd_paths() -> list[Path]:
    """Our CRDs (crds/) and Knative's Service, Revision, PingSource, Trigger and Broker CRDs (bin/knative-crds/)."""
    ours = sorted((ROOT / "crds").glob("*.yaml"))
    knative = sorted((BIN / "knative-crds").glob("*.yaml"))
    if not knative:
        raise MissingBinaries(f"Knative CRDs missing in {BIN / 'knative-crds'}; run `make tools`")
    return ours + knative


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager as child processes, all data in one directory."""

    def __init__(
        self,
        binaries: Binaries | None = None,
        crd_paths: list[Path] | None = None,
        workdir: Path | None = None,
        start_timeout: float = 60.0,
        network: Network | None = None,
    ) -> None:
        self.binaries = binaries or Binaries.find()
        self.network = network or Network()
        self.crd_paths = default_crd_paths() if crd_paths is None else crd_paths
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="aifn-controlplane-"))
        self.start_timeout = start_timeout
        self.components: dict[str, Component] = {}
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.server = ""
        self.startup_seconds = 0.0
        self._ca: CertificateAuthority | None = None

    # Lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self, attempts: int = 3) -> None:
        """Start all components, write the admin kubeconfig and install the CRDs.

        Ports are picked free but not reserved; if another process takes one first, start again.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                return
            except RuntimeError as failed:
                if "address already in use" not in str(failed) or attempt == attempts:
                    raise
                self._stop_components()
                self.components.clear()

    def _start_once(self) -> None:
        started = time.monotonic()
        pki_dir = self.workdir / "pki"
        pki_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self._ca = CertificateAuthority(pki_dir)
        apiserver_port = self.network.port or free_port()
        address = self.network.bind_address
        self.server = f"https://{address}:{apiserver_port}"
        hosts = tuple(dict.fromkeys((address, "127.0.0.1", "localhost", self.network.service_ip, "kubernetes",
                                     "kubernetes.default", "kubernetes.default.svc",
                                     "kubernetes.default.svc.cluster.local")))
        serving = self._ca.issue("apiserver", "kube-apiserver", hosts=hosts)
        admin = self._ca.issue("admin", "aifn-admin", organizations=("system:masters",))
        kcm_client = self._ca.issue("kube-controller-manager", "system:kube-controller-manager")
        sa_keys = service_account_keys(pki_dir)
        self._write_kubeconfig(self.kubeconfig, "aifn-admin", client=admin)
        kcm_kubeconfig = self.workdir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(kcm_kubeconfig, "system:kube-controller-manager", client=kcm_client)

        extra: list[str] = []
        if self.network.kubelet_client_user:
            kubelet_client = self._ca.issue("apiserver-kubelet-client", self.network.kubelet_client_user)
            extra = [f"--kubelet-client-certificate={kubelet_client.cert}",
                     f"--kubelet-client-key={kubelet_client.key}"]
        etcd_url = self._start_etcd()
        self._start_apiserver(apiserver_port, etcd_url, serving, sa_keys, extra)
        self._start_controller_manager(kcm_kubeconfig, sa_keys)
        self.install_crds(self.crd_paths)
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """Stop the components (controller manager first) and remove the data unless it was given."""
        self._stop_components()
        if self._own_workdir and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_components(self) -> None:
        for name in reversed(list(self.components)):
            self.components[name].stop()

    def logs(self, max_bytes: int = 6000) -> str:
        """The last output of every component, for failure reports."""
        parts = []
        for name, component in self.components.items():
            parts.append(f"----- {name} (pid {component.pid}, exit {component.exit_code()}) -----\n"
                         f"{component.log_tail(max_bytes)}")
        return "\n".join(parts)

    # Components --------------------------------------------------------------------------------

    def _start_etcd(self) -> str:
        shutil.rmtree(self.workdir / "etcd", ignore_errors=True)  # a fresh member on every start
        client_url = f"http://127.0.0.1:{free_port()}"
        peer_url = f"http://127.0.0.1:{free_port()}"
        etcd = self._component("etcd", [
            str(self.binaries.etcd),
            "--name=aifn",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=aifn={peer_url}",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ])
        wait_until("etcd /health", lambda: http_ok(f"{client_url}/health"), self.start_timeout, etcd)
        return client_url

    def _start_apiserver(
        self, port: int, etcd_url: str, serving: KeyPair, sa_keys: KeyPair, extra: list[str] | None = None
    ) -> None:
        assert self._ca is not None
        apiserver = self._component("kube-apiserver", [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={etcd_url}",
            f"--bind-address={self.network.bind_address}",
            f"--advertise-address={self.network.bind_address}",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'apiserver'}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={self._ca.cert_path}",
            f"--authorization-mode={self.network.authorization_mode}",
            f"--service-account-issuer={self.server}",
            f"--service-account-key-file={sa_keys.cert}",
            f"--service-account-signing-key-file={sa_keys.key}",
            f"--service-cluster-ip-range={self.network.service_cidr}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self.network.extra_apiserver_args,
            *(extra or []),
        ])
        context = self._admin_ssl_context()
        wait_until("kube-apiserver /readyz", lambda: http_ok(f"{self.server}/readyz", context),
                   self.start_timeout, apiserver)

    def _start_controller_manager(self, kubeconfig: Path, sa_keys: KeyPair) -> None:
        assert self._ca is not None
        port = free_port()
        kcm = self._component("kube-controller-manager", [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--authentication-skip-lookup=true",  # no front-proxy CA to look up; only /healthz is served
            f"--controllers={','.join(self.network.controllers)}",
            "--use-service-account-credentials=true",
            f"--root-ca-file={self._ca.cert_path}",
            f"--service-account-private-key-file={sa_keys.key}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'kube-controller-manager'}",
            f"--service-cluster-ip-range={self.network.service_cidr}",
            "--v=1",
            *self.network.extra_controller_manager_args,
        ])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving cert; only /healthz is read
        wait_until("kube-controller-manager /healthz", lambda: http_ok(f"https://127.0.0.1:{port}/healthz", insecure),
                   self.start_timeout, kcm)
        # ServiceAccount admission needs the `default` ServiceAccount: proof the controllers run.
        wait_until("the default ServiceAccount in namespace default",
                   lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False).returncode == 0,
                   self.start_timeout, kcm)

    def _component(self, name: str, argv: list[str]) -> Component:
        component = Component(name, argv, self.workdir / "logs" / f"{name}.log")
        self.components[name] = component
        component.start()
        return component

    # Clients -----------------------------------------------------------------------------------

    @property
    def ca(self) -> CertificateAuthority:
        """The control plane's CA (signs the apiserver's serving cert and every client cert)."""
        assert self._ca is not None, "the control plane is not started"
        return self._ca

    def client_kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        """A kubeconfig authenticating as `user` in `groups` by a client certificate from this CA."""
        pair = self.ca.issue(name, user, organizations=groups)
        path = self.workdir / f"{name}.kubeconfig"
        self._write_kubeconfig(path, user, client=pair)
        return path

    def _admin_ssl_context(self) -> ssl.SSLContext:
        assert self._ca is not None
        context = ssl.create_default_context(cafile=str(self._ca.cert_path))
        context.load_cert_chain(str(self.workdir / "pki" / "admin.crt"), str(self.workdir / "pki" / "admin.key"))
        return context

    def _write_kubeconfig(self, path: Path, user: str, client: KeyPair | None = None, token: str | None = None) -> None:
        assert self._ca is not None
        credentials: dict[str, str] = {}
        if client is not None:
            credentials = {
                "client-certificate-data": _b64(client.cert.read_bytes()),
                "client-key-data": _b64(client.key.read_bytes()),
            }
        if token is not None:
            credentials = {"token": token}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "aifn", "cluster": {
                "server": self.server, "certificate-authority-data": _b64(self._ca.cert_pem)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "aifn", "context": {"cluster": "aifn", "user": user, "namespace": "default"}}],
            "current-context": "aifn",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def kubectl(
        self, *args: str, kubeconfig: Path | None = None, input: str | None = None, check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this control plane (as admin unless `kubeconfig` is given)."""
        argv = [str(self.binaries.kubectl), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:1] + list(args))} failed ({result.returncode}):\n{result.stderr}")
        return result

    def install_crds(self, paths: list[Path], timeout: float = 60.0) -> list[str]:
        """Server-side apply CRD files and wait until each CRD is Established; return their names."""
        names: list[str] = []
        for path in paths:
            for doc in yaml.safe_load_all(path.read_text()):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    names.append(doc["metadata"]["name"])
        if not paths:
            return names
        files = [arg for path in paths for arg in ("-f", str(path))]
        self.kubectl("apply", "--server-side", "--field-manager=aifn-test", *files, timeout=timeout)
        if names:
            self.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                         *[f"crd/{name}" for name in names], timeout=timeout + 5)
        return names

    def service_account_identity(self, namespace: str, name: str, duration: str = "1h") -> Identity:
        """A kubeconfig holding a TokenRequest token of ServiceAccount `namespace/name` (created if absent).

        It has exactly the RBAC that is bound to that ServiceAccount, nothing more.
        """
        exists = self.kubectl("get", "serviceaccount", name, "-n", namespace, check=False).returncode == 0
        if not exists:
            self.kubectl("create", "serviceaccount", name, "-n", namespace)
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        username = f"system:serviceaccount:{namespace}:{name}"
        path = self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        self._write_kubeconfig(path, username, token=token)
        return Identity(username=username, kubeconfig=path, token=token)

    def admin_identity(self) -> Identity:
        """The admin identity (client certificate, group system:masters)."""
        return Identity(username="aifn-admin", kubeconfig=self.kubeconfig)

    def get_json(self, *args: str) -> dict:
        """`kubectl get ... -o json` as a dict."""
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)
