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
from support.operator_fixtures import kube, start_operator  # noqa: F401  (fixtures)
from support.operator_process import wait_for

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
    wait_for("the Service", lambda: kube.get_service(namespace, "fn"), 15, on_timeout=op.log_tail)
    kube.mark_service_ready(namespace, "fn")
    wait_for("Ready", lambda: condition(kube.get_function(namespace, "fn"), "Ready").get("status") == "True", 15, on_timeout=op.log_tail)

    kube.delete_service(namespace, "fn")  # drift: watch + re-create
    wait_for("the Service recreated", lambda: kube.get_service(namespace, "fn"), 15, on_timeout=op.log_tail)
    kube.create_function(namespace, function("bad", {"model": {"name": "m", "repository": "./local"}}))  # status + Event
    wait_for("an InvalidSpec Event", lambda: [e for e in kube.events_for(namespace, "bad") if e.reason == "InvalidSpec"], 15, on_timeout=op.log_tail)
    kube.create_function(namespace, function("gpu", {"model": {"name": "m", "repository": "s3://b/r"}, "resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}))  # ConfigMap read
    wait_for("KnativeFeatureDisabled", lambda: condition(kube.get_function(namespace, "gpu"), "Ready").get("reason") == "KnativeFeatureDisabled", 15, on_timeout=op.log_tail)

    log = op.log_tail(200_000)
    assert not rbac_denials(log), log
    assert op.stop() == 0
