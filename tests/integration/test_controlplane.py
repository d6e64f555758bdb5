"""The control plane behaves like a cluster's: pinned version, GC, namespace deletion, RBAC identities."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from support.controlplane import ROOT, ControlPlane, Identity
from support.processes import wait_until

pytestmark = pytest.mark.integration


def _pinned(module_dir: str, module: str) -> str:
    text = (ROOT / "hack" / "tools" / module_dir / "go.mod").read_text()
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v[^\s]+)", text, re.MULTILINE)
    assert match, f"{module} not required in hack/tools/{module_dir}/go.mod"
    return match.group(1)


def test_apiserver_reports_the_pinned_kubernetes_version(control_plane: ControlPlane) -> None:
    binary = control_plane.binaries.kube_apiserver.resolve()
    if not binary.parent.name.startswith("kubernetes-v"):  # build-tools.sh names its builds so
        pytest.skip(f"kube-apiserver comes from {binary} (KUBEBUILDER_ASSETS), not from the pinned build")
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == _pinned("kubernetes", "k8s.io/kubernetes")


def test_knative_and_aifn_crds_are_established(control_plane: ControlPlane) -> None:
    for crd in ("aifunctions.aifn.dev", "services.serving.knative.dev", "pingsources.sources.knative.dev",
                "triggers.eventing.knative.dev", "brokers.eventing.knative.dev"):
        conditions = control_plane.get_json("crd", crd)["status"]["conditions"]
        assert {"type": "Established", "status": "True"} in [
            {"type": c["type"], "status": c["status"]} for c in conditions
        ], crd


def test_owner_reference_garbage_collection(control_plane: ControlPlane, namespace: str) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner_uid = control_plane.get_json("configmap", "owner", "-n", namespace)["metadata"]["uid"]
    child = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}]},
    }
    control_plane.kubectl("apply", "-f", "-", input=json.dumps(child))
    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    def child_gone() -> bool:
        return control_plane.kubectl("get", "configmap", "child", "-n", namespace, check=False).returncode != 0

    wait_until("the garbage collector to delete the owned ConfigMap", child_gone, 60, interval=0.25)


def test_namespace_deletion_finalizes(control_plane: ControlPlane, namespace: str) -> None:
    doomed = f"{namespace}-gone"
    control_plane.kubectl("create", "namespace", doomed)
    control_plane.kubectl("create", "configmap", "data", "-n", doomed)
    control_plane.kubectl("delete", "namespace", doomed, "--wait=true", "--timeout=90s", timeout=100)
    assert control_plane.kubectl("get", "namespace", doomed, check=False).returncode != 0
    control_plane.kubectl("create", "namespace", doomed)  # the name is free again
    control_plane.kubectl("delete", "namespace", doomed, "--wait=false")


def test_new_namespaces_get_a_default_service_account(control_plane: ControlPlane, namespace: str) -> None:
    def has_default() -> bool:
        return control_plane.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0

    wait_until("the serviceaccount controller to create `default`", has_default, 60, interval=0.25)


def test_service_account_identity_holds_only_its_rbac(
    control_plane: ControlPlane, namespace: str, sa_identity: Callable[..., Identity]
) -> None:
    robot = sa_identity("robot")
    assert robot.username == f"system:serviceaccount:{namespace}:robot"
    whoami = json.loads(control_plane.kubectl("auth", "whoami", "-o", "json", kubeconfig=robot.kubeconfig).stdout)
    assert whoami["status"]["userInfo"]["username"] == robot.username

    denied = control_plane.kubectl("get", "configmaps", "-n", namespace, kubeconfig=robot.kubeconfig, check=False)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower() and robot.username in denied.stderr

    control_plane.kubectl("create", "role", "read-configmaps", "-n", namespace,
                          "--verb=get,list", "--resource=configmaps")
    control_plane.kubectl("create", "rolebinding", "robot-reads", "-n", namespace,
                          "--role=read-configmaps", f"--serviceaccount={namespace}:robot")
    control_plane.kubectl("create", "configmap", "visible", "-n", namespace)
    allowed = control_plane.kubectl("get", "configmaps", "-n", namespace, "-o", "name", kubeconfig=robot.kubeconfig)
    assert "configmap/visible" in allowed.stdout.split()

    for forbidden in (("get", "secrets", "-n", namespace), ("get", "configmaps", "-n", "default"),
                      ("delete", "configmap", "visible", "-n", namespace), ("get", "namespaces")):
        result = control_plane.kubectl(*forbidden, kubeconfig=robot.kubeconfig, check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), forbidden


def test_admin_kubeconfig_is_self_contained(kubeconfig: Path, control_plane: ControlPlane) -> None:
    text = kubeconfig.read_text()
    assert "certificate-authority-data" in text and "client-certificate-data" in text
    assert control_plane.server in text
    names = control_plane.kubectl("auth", "can-i", "*", "*", "--all-namespaces")
    assert names.stdout.strip() == "yes"
