"""The operator with only the Helm chart's RBAC (a ServiceAccount identity): a missing permission fails here.

The chart's ServiceAccount, (Cluster)Role and bindings are rendered by `helm template` and applied
(both chart modes), or built from the rules docs/operator.md lists; the operator runs with a
TokenRequest token of that ServiceAccount.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import BIN, ROOT, ControlPlane
from support.kube_client import TestClient, condition, function
from support.logs import rbac_denials
from support.processes import wait_until

pytestmark = pytest.mark.integration
CHART = ROOT / "charts" / "aifunction-operator"
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
DOCS = ROOT / "docs" / "operator.md"


def documented_rules(marker: str) -> list[dict[str, Any]]:
    """The YAML rules block of docs/operator.md that starts with `# aifn-operator: <marker>`."""
    for block in DOCS.read_text().split("```yaml\n")[1:]:
        text = block.split("```", 1)[0]
        if text.startswith(f"# aifn-operator: {marker}"):
            return yaml.safe_load(text)
    raise AssertionError(f"no `# aifn-operator: {marker}` rules block in {DOCS}")


def documented_rbac(release: str, namespace: str) -> list[dict[str, Any]]:
    """A ServiceAccount bound to exactly the rules docs/operator.md lists (all-namespaces mode)."""
    account = {"kind": "ServiceAccount", "name": release, "namespace": namespace}
    meta = {"name": release}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": release, "namespace": namespace}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta, "rules": documented_rules("functions")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": release}, "subjects": [account]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {**meta, "namespace": namespace}, "rules": documented_rules("knative-config")},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {**meta, "namespace": namespace}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": release}, "subjects": [account]},
    ]


def chart_rbac(release: str, namespace: str, values: list[str]) -> list[dict[str, Any]]:
    helm = BIN / "helm"
    if not helm.exists():
        pytest.skip(f"{helm} missing; run `make tools`")
    sets = [arg for value in values for arg in ("--set", value)]
    out = subprocess.run([str(helm), "template", release, str(CHART), "--namespace", namespace, *sets], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc and doc.get("kind") in RBAC_KINDS]


@pytest.mark.parametrize("mode", ["cluster", "namespaced", "docs"])
def test_operator_works_with_only_the_charts_rbac(mode: str, control_plane: ControlPlane, kube: TestClient, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    release = f"rbac-{secrets.token_hex(3)}"
    values = [f"operator.knativeNamespace={namespace}"]
    if mode == "namespaced":
        values.append(f"watchNamespaces={{{namespace}}}")
    docs = documented_rbac(release, namespace) if mode == "docs" else chart_rbac(release, namespace, values)
    assert {d["kind"] for d in docs} >= {"ServiceAccount", "Role", "RoleBinding"}
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    account = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    identity = control_plane.service_account_identity(namespace, account)

    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "enabled"})
    extra = [f"--peering={release}"] if mode == "docs" else []  # the documented peering rules, creating the object
    op = start_operator(*extra, kubeconfig=identity.kubeconfig, scope=() if mode in ("cluster", "docs") else None)
    kube.create_function(namespace, function("fn"))
    wait_until("the Service", lambda: kube.get_service(namespace, "fn"), 15, diagnose=op.log_tail)
    kube.mark_service_ready(namespace, "fn")
    wait_until("Ready", lambda: condition(kube.get_function(namespace, "fn"), "Ready").get("status") == "True", 15, diagnose=op.log_tail)

    kube.delete_service(namespace, "fn")  # drift: watch + re-create
    wait_until("the Service recreated", lambda: kube.get_service(namespace, "fn"), 15, diagnose=op.log_tail)
    kube.create_function(namespace, function("bad", {"model": {"name": "m", "repository": "./local"}}))  # status + Event
    wait_until("an InvalidSpec Event", lambda: [e for e in kube.events_for(namespace, "bad") if e.reason == "InvalidSpec"], 15, diagnose=op.log_tail)
    kube.create_function(namespace, function("gpu", {"model": {"name": "m", "repository": "s3://b/r"}, "resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}))  # ConfigMap read
    wait_until("KnativeFeatureDisabled", lambda: condition(kube.get_function(namespace, "gpu"), "Ready").get("reason") == "KnativeFeatureDisabled", 15, diagnose=op.log_tail)

    log = op.log_tail(200_000)
    assert not rbac_denials(log), log
    assert op.stop() == 0


POLICY_KINDS = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"


def users_objects(kube: TestClient, namespace: str) -> dict[str, tuple[Any, Any, Any]]:
    """A ConfigMap, Knative Service, PingSource and Trigger that no AIFunction controls, created by
    the admin; for each, (get, patch, delete) as callables taking a client."""
    from kubernetes import client as k8s

    kube.core.create_namespaced_config_map(namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="theirs"), data={"k": "v"}))
    custom = {
        "services": ("serving.knative.dev", {"template": {"spec": {"containers": [{"image": "example.com/theirs:1"}]}}}, "Service"),
        "pingsources": ("sources.knative.dev", {"schedule": "* * * * *", "sink": {"uri": "http://theirs.example"}}, "PingSource"),
        "triggers": ("eventing.knative.dev", {"broker": "default", "subscriber": {"uri": "http://theirs.example"}}, "Trigger"),
    }
    objects: dict[str, tuple[Any, Any, Any]] = {
        "configmaps": (
            lambda c: c.core.read_namespaced_config_map("theirs", namespace).metadata.resource_version,
            lambda c: c.core.patch_namespaced_config_map("theirs", namespace, {"data": {"k": "changed"}}),
            lambda c: c.core.delete_namespaced_config_map("theirs", namespace),
        )
    }
    for plural, (group, spec, kind) in custom.items():
        kube.custom.create_namespaced_custom_object(group, "v1", namespace, plural, {"apiVersion": f"{group}/v1", "kind": kind, "metadata": {"name": "theirs"}, "spec": spec})
        objects[plural] = (
            lambda c, g=group, p=plural: c.custom.get_namespaced_custom_object(g, "v1", namespace, p, "theirs")["metadata"]["resourceVersion"],
            lambda c, g=group, p=plural: c.custom.patch_namespaced_custom_object(g, "v1", namespace, p, "theirs", {"metadata": {"labels": {"aifn.dev/function": "fn"}}}),
            lambda c, g=group, p=plural: c.custom.delete_namespaced_custom_object(g, "v1", namespace, p, "theirs"),
        )
    return objects


def status_of(call: Any) -> int:
    """The HTTP status a client call ends with (200 when it succeeds)."""
    from kubernetes.client import ApiException

    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def test_under_the_charts_admission_policy_the_operator_can_touch_only_what_functions_control(control_plane: ControlPlane, kube: TestClient, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    """Issue 14, security 4: the chart's RBAC lets the operator's ServiceAccount patch and delete every
    ConfigMap (cluster mode: in every namespace); its ValidatingAdmissionPolicy confines writes and
    deletes to objects an AIFunction controls. The operator still does all its work under it."""
    from .test_operator_triggers import EVENTING, children_exist, get_configmap, get_eventing, lambda_spec

    release = f"own-{secrets.token_hex(3)}"
    helm = BIN / "helm"
    if not helm.exists():
        pytest.skip(f"{helm} missing; run `make tools`")
    out = subprocess.run([str(helm), "template", release, str(CHART), "--namespace", namespace, "--api-versions", VAP_API, "--set", f"operator.knativeNamespace={namespace}"], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") in RBAC_KINDS | POLICY_KINDS]
    assert {d["kind"] for d in docs} >= POLICY_KINDS | {"ClusterRole"}, "cluster mode: RBAC alone would allow every ConfigMap"
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    try:
        identity = control_plane.service_account_identity(namespace, next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"))
        as_operator = TestClient(identity.kubeconfig)
        objects = users_objects(kube, namespace)
        # The policy takes effect once the API server has loaded it (about a second).
        wait_until("the policy refusing the operator's patch of a user's ConfigMap", lambda: status_of(lambda: objects["configmaps"][1](as_operator)) == 403, 20)
        for plural, (version_of, patch, delete) in objects.items():
            before = version_of(kube)
            assert status_of(lambda: patch(as_operator)) == 403, f"the operator's ServiceAccount patched a user's {plural}"
            assert status_of(lambda: delete(as_operator)) == 403, f"the operator's ServiceAccount deleted a user's {plural}"
            assert version_of(kube) == before, plural

        op = start_operator(kubeconfig=identity.kubeconfig, scope=())
        kube.create_function(namespace, function("fn", lambda_spec()))
        children_exist(kube, namespace, "fn")
        group, version, plural = EVENTING["Trigger"]
        from aifunction_operator.render.metadata import child_name

        kube.custom.patch_namespaced_custom_object(group, version, namespace, plural, child_name("fn", "uploads"), {"spec": {"filter": {"attributes": {"type": "edited"}}}})
        wait_until("the Trigger's drift reverted under the policy", lambda: (t := get_eventing(kube, "Trigger", namespace, child_name("fn", "uploads"))) and t["spec"]["filter"]["attributes"]["type"] == "dev.aifn.image.uploaded", 15, diagnose=op.log_tail)
        kube.patch_function(namespace, "fn", {"spec": {"triggers": {"schedules": None}, "handler": {"code": None, "configMap": {"name": "theirs", "key": "k"}}}})
        wait_until("its own PingSource and ConfigMap pruned under the policy", lambda: get_eventing(kube, "PingSource", namespace, child_name("fn", "nightly")) is None and get_configmap(kube, namespace, child_name("fn", "handler")) is None, 15, diagnose=op.log_tail)
        assert get_configmap(kube, namespace, "theirs") is not None
        log = op.log_tail(200_000)
        assert not rbac_denials(log), log
        assert op.stop() == 0
    finally:
        for doc in docs:
            if doc["kind"] in POLICY_KINDS:
                control_plane.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], check=False)
