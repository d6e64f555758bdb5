"""The Helm chart with the real helm: lint, rendered variants, and install on the real control plane.

`helm template` variants check what a reviewer of the chart would: the Deployment is hardened,
RBAC is least privilege (no wildcards, no Secrets, exactly the rules listed here), the CRDs are
in by default and equal to crds/, and namespaced mode grants nothing cluster-wide. The install
tests then run the operator process with the token of the ServiceAccount the chart binds, so a
permission missing from the chart fails a test here. (The operator's own behaviour is tested in
the operator's tests; here only the chart's RBAC is under test.)
"""

from __future__ import annotations

import copy
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.helm import CHART, by_kind, helm, helm_binary, one, render
from support.logs import rbac_denials
from support.processes import free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(helm_binary() is None, reason="helm not found: run `make tools` (builds bin/helm)"),
]

APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
NAMESPACED = {"watchNamespaces": "{team-a,team-b}"}
PEERING = {"operator.peering": "aifn-operator"}

# The complete permissions of the operator. Adding one is a reviewed change to this table.
FUNCTION_RULES = [  # docs/operator.md "RBAC"
    (("aifn.dev",), ("aifunctions",), ("get", "list", "watch", "patch")),
    (("aifn.dev",), ("aifunctions/status",), ("patch",)),
    (("serving.knative.dev",), ("services",), ("get", "list", "watch", "create", "patch")),
    (("serving.knative.dev",), ("revisions",), ("get", "list", "watch", "patch")),  # scheduled pre-warm: min-scale
    (("",), ("pods",), ("list", "watch")),
    (("",), ("events",), ("create",)),
    (("",), ("configmaps",), ("list", "watch", "create", "patch", "delete")),  # inline handler code (issue #8)
    (("sources.knative.dev",), ("pingsources",), ("list", "watch", "create", "patch", "delete")),
    (("eventing.knative.dev",), ("triggers",), ("list", "watch", "create", "patch", "delete")),
]
CRD_WATCH = (("apiextensions.k8s.io",), ("customresourcedefinitions",), ("list", "watch"))
CLUSTER_PEERING = (("kopf.dev",), ("clusterkopfpeerings",), ("get", "list", "watch", "patch", "create"))
NAMESPACED_PEERING = (("kopf.dev",), ("kopfpeerings",), ("get", "list", "watch", "patch", "create"))
NODE_READ = (("",), ("nodes",), ("get",))  # status.gpuProduct: the product of the node a GPU pod runs on
DISCOVERY = [(("",), ("namespaces",), ("list", "watch")), CRD_WATCH, NODE_READ]
KNATIVE_CONFIG = [(("",), ("configmaps",), ("get", "list", "watch"))]
HELM_LABELS = {"helm.sh/chart", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version"}


def rules_of(role: dict[str, Any]) -> list[tuple[tuple[str, ...], ...]]:
    return [(tuple(r.get("apiGroups", ())), tuple(r.get("resources", ())), tuple(r.get("verbs", ()))) for r in role["rules"]]


def all_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return by_kind(objects, "ClusterRole") + by_kind(objects, "Role")


def deployment_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["operator"]
    return containers[0]


# --- lint ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [{}, NAMESPACED, PEERING | {"replicaCount": "2"}], ids=["default", "namespaced", "peered"])
def test_helm_lint_is_clean(values: dict[str, str]) -> None:
    result = helm("lint", "--strict", str(CHART), *[a for k, v in values.items() for a in ("--set", f"{k}={v}")])
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replicaCont": "1"}, "replicaCont"),
        ({"crds.instal": "false"}, "instal"),
        ({"operator.logFormat": "xml"}, "logFormat"),
        ({"replicaCount": "2"}, "replicaCount"),
        ({"metrics.serviceMonitor.enabled": "true", "metrics.service.enabled": "false"}, "metrics.service.enabled"),
    ],
    ids=["typo-top", "typo-nested", "bad-enum", "two-standalone", "monitor-without-service"],
)
def test_bad_values_fail_with_the_key_named(values: dict[str, str], complaint: str) -> None:
    result = helm("template", "aifn", str(CHART), *[a for k, v in values.items() for a in ("--set", f"{k}={v}")], check=False)
    assert result.returncode != 0, f"helm accepted {values}"
    assert complaint in result.stderr, result.stderr


# --- the rendered chart -------------------------------------------------------------------------

def test_default_render_has_every_part() -> None:
    objects = render()
    kinds = sorted(obj["kind"] for obj in objects)
    assert kinds == sorted([
        "CustomResourceDefinition", "CustomResourceDefinition", "CustomResourceDefinition",
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
    ]), kinds
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PodDisruptionBudget")
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "knative-serving" and rules_of(role) == KNATIVE_CONFIG


def test_deployment_is_hardened() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = deployment_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "privileged" not in context or context["privileged"] is False
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 8080, "metrics": 9090}
    assert container["image"] == f"ghcr.io/aifn-dev/aifunction-operator:{APP_VERSION}"
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert pod["serviceAccountName"] == one(objects, "ServiceAccount")["metadata"]["name"]
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


def test_operator_flags_and_environment() -> None:
    container = deployment_container(render({"operator.tritonImage": "example.com/triton:1", "image.digest": "sha256:" + "a" * 64}))
    assert container["args"] == ["--health-port=8080", "--metrics-port=9090", "--log-format=json", "--knative-namespace=knative-serving", "--standalone"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["AIFN_TRITON_IMAGE"] == "example.com/triton:1"
    assert env["AIFN_KNATIVE_NAMESPACE"] == "knative-serving"
    assert "POD_NAME" in env
    assert container["image"] == "ghcr.io/aifn-dev/aifunction-operator@sha256:" + "a" * 64


@pytest.mark.parametrize("values", [{}, NAMESPACED, PEERING, NAMESPACED | PEERING], ids=["default", "namespaced", "peered", "namespaced-peered"])
def test_rbac_has_no_wildcards_and_no_secrets(values: dict[str, str]) -> None:
    roles = all_roles(render(values))
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['kind']} {role['metadata']['name']}: wildcard in {field}: {rule}"
            assert not {"secrets", "serviceaccounts/token"} & set(rule["resources"]), f"{role['metadata']['name']} can read Secrets: {rule}"
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule
            assert "nonResourceURLs" not in rule


def test_cluster_mode_rbac_is_exactly_what_the_operator_needs() -> None:
    objects = render()
    assert rules_of(one(objects, "ClusterRole")) == [*FUNCTION_RULES, CRD_WATCH, NODE_READ]
    binding = one(objects, "ClusterRoleBinding")
    account = one(objects, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "aifn-system"}]
    assert binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"]
    peered = render(PEERING)
    assert rules_of(one(peered, "ClusterRole")) == [*FUNCTION_RULES, CRD_WATCH, NODE_READ, CLUSTER_PEERING]
    assert "--peering=aifn-operator" in deployment_container(peered)["args"]
    assert one(peered, "Deployment")["spec"]["strategy"] == {"type": "RollingUpdate"}


def test_namespaced_mode_grants_only_discovery_cluster_wide() -> None:
    objects = render(NAMESPACED | PEERING)
    assert rules_of(one(objects, "ClusterRole")) == DISCOVERY
    assert one(objects, "ClusterRoleBinding")["roleRef"]["name"] == "aifn-aifunction-operator-discovery"
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in by_kind(objects, "Role")}
    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in by_kind(objects, "RoleBinding")}
    assert set(roles) == bindings
    for namespace in ("team-a", "team-b"):
        assert rules_of(roles[(namespace, "aifn-aifunction-operator")]) == [*FUNCTION_RULES, NAMESPACED_PEERING]
    assert rules_of(roles[("knative-serving", "aifn-aifunction-operator-knative-config")]) == KNATIVE_CONFIG
    args = deployment_container(objects)["args"]
    assert args[-2:] == ["--namespace=team-a", "--namespace=team-b"]
    without_knative_role = render(NAMESPACED | {"rbac.knativeConfigRole": "false"})
    assert {r["metadata"]["namespace"] for r in by_kind(without_knative_role, "Role")} == {"team-a", "team-b"}
    assert not all_roles(render({"rbac.create": "false"}))


VAP_API = "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy"


def test_the_owned_objects_policy_confines_the_operators_writes() -> None:
    """RBAC cannot scope writes by owner; the chart's ValidatingAdmissionPolicy does (issue 14, security 4).
    Rendered where the cluster serves the API (`helm install` asks the cluster; helm 3.22's offline
    default API set lacks it, so `helm template` leaves it out unless told)."""
    objects = render_with_api(VAP_API)
    policy, binding = one(objects, "ValidatingAdmissionPolicy"), one(objects, "ValidatingAdmissionPolicyBinding")
    account = one(objects, "ServiceAccount")["metadata"]["name"]
    assert [c["expression"] for c in policy["spec"]["matchConditions"]] == [f"request.userInfo.username == 'system:serviceaccount:aifn-system:{account}'"]
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): r["operations"] for r in policy["spec"]["matchConstraints"]["resourceRules"]}
    written = {(groups, resources) for groups, resources, verbs in FUNCTION_RULES if {"create", "patch", "delete"} & set(verbs)}
    own = {(("aifn.dev",), ("aifunctions",)), (("aifn.dev",), ("aifunctions/status",)), (("",), ("events",))}  # its own CR, Events
    assert set(rules) == written - own, "every other kind the operator may write is under the policy"
    assert all(ops == ["CREATE", "UPDATE", "DELETE"] for ops in rules.values())
    assert policy["spec"]["failurePolicy"] == "Fail" and all(v["reason"] == "Forbidden" for v in policy["spec"]["validations"])
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    for off in ({"rbac.ownedObjectsPolicy": "false"}, {"rbac.create": "false"}):
        assert not by_kind(render_with_api(VAP_API, off), "ValidatingAdmissionPolicy"), off


def render_with_api(api_version: str, values: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """`helm template` as against a cluster that serves `api_version`."""
    out = helm("template", "aifn", str(CHART), "--namespace", "aifn-system", "--api-versions", api_version, *[a for k, v in (values or {}).items() for a in ("--set", f"{k}={v}")]).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _strip_helm(crd: dict[str, Any]) -> dict[str, Any]:
    crd = copy.deepcopy(crd)
    metadata = crd["metadata"]
    for key in HELM_LABELS:
        metadata.get("labels", {}).pop(key, None)
    metadata.get("annotations", {}).pop("helm.sh/resource-policy", None)
    if metadata.get("annotations") == {}:
        del metadata["annotations"]
    return crd


def test_crds_are_included_by_default_and_equal_to_crds_dir() -> None:
    expected = {doc["metadata"]["name"]: doc for path in sorted((ROOT / "crds").glob("*.yaml"))
                for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "CustomResourceDefinition"}
    rendered = {crd["metadata"]["name"]: crd for crd in by_kind(render(), "CustomResourceDefinition")}
    assert "aifunctions.aifn.dev" in rendered
    assert set(rendered) == set(expected)
    for name, crd in rendered.items():
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}, name
        assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        assert _strip_helm(crd) == expected[name], f"the chart's {name} differs from crds/: run hack/sync-chart-crds.py"


def test_crds_install_and_keep_switches() -> None:
    assert not by_kind(render({"crds.install": "false"}), "CustomResourceDefinition")
    for crd in by_kind(render({"crds.keep": "false"}), "CustomResourceDefinition"):
        assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_optional_service_monitor_and_pod_disruption_budget() -> None:
    objects = render({"metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.labels.release": "kube-prometheus",
                      "podDisruptionBudget.enabled": "true", "podDisruptionBudget.minAvailable": "1"})
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"selector": {"matchLabels": service["spec"]["selector"]}, "minAvailable": 1}
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert one(objects, "Deployment")["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert not by_kind(render({"metrics.service.enabled": "false"}), "Service")


# --- helm install on the real control plane -----------------------------------------------------

KNATIVE_FLAGS = {
    "kubernetes.podspec-nodeselector": "enabled",
    "kubernetes.podspec-tolerations": "enabled",
    "kubernetes.podspec-persistent-volume-claim": "enabled",
    "kubernetes.podspec-init-containers": "enabled",
}


@pytest.fixture
def knative_namespace(control_plane: Any, namespace: str) -> Iterator[str]:
    """A namespace standing in for knative-serving, with config-features as README tells users to set it.

    Each test gets its own, so no other test's Knative settings leak in.
    """
    name = f"{namespace[:50]}-kn"
    control_plane.kubectl("create", "namespace", name)
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config-features", "namespace": name}, "data": KNATIVE_FLAGS}
    control_plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(config))
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def release(control_plane: Any, namespace: str) -> Iterator[str]:
    """A release name unique to the test; uninstalled afterwards."""
    name = f"r{secrets.token_hex(3)}"
    yield name
    helm("uninstall", name, "--namespace", namespace, kubeconfig=control_plane.kubeconfig, check=False)


def install(control_plane: Any, release: str, namespace: str, values: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`helm install` with the CRDs left to the control plane (they are installed from crds/ already)."""
    return helm("install", release, str(CHART), "--namespace", namespace, "--set", "crds.install=false",
                *[a for k, v in values.items() for a in ("--set", f"{k}={v}")], kubeconfig=control_plane.kubeconfig)


def test_helm_install_creates_the_operator(control_plane: Any, namespace: str, knative_namespace: str, release: str) -> None:
    result = install(control_plane, release, namespace, {"operator.knativeNamespace": knative_namespace})
    assert "STATUS: deployed" in result.stdout
    notes = result.stdout.split("NOTES:", 1)[1]
    for flag in KNATIVE_FLAGS:
        assert flag in notes
    assert "kubectl apply -f examples/digits.yaml" in notes
    fullname = f"{release}-aifunction-operator"
    deployment = control_plane.get_json("deployment", fullname, "-n", namespace)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == fullname
    assert deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    control_plane.get_json("serviceaccount", fullname, "-n", namespace)
    control_plane.get_json("service", f"{fullname}-metrics", "-n", namespace)
    assert rules_of(control_plane.get_json("clusterrole", fullname)) == [*FUNCTION_RULES, CRD_WATCH, NODE_READ]
    control_plane.get_json("clusterrolebinding", fullname)
    assert rules_of(control_plane.get_json("role", f"{fullname}-knative-config", "-n", knative_namespace)) == KNATIVE_CONFIG
    account = f"system:serviceaccount:{namespace}:{fullname}"
    for verb, resource, extra, expected in [
        ("create", "services.serving.knative.dev", [], "yes"), ("patch", "aifunctions.aifn.dev", ["--subresource=status"], "yes"),
        ("get", "secrets", [], "no"), ("list", "secrets", [], "no"), ("create", "pods", [], "no"),
        ("delete", "aifunctions.aifn.dev", [], "no"), ("create", "clusterroles.rbac.authorization.k8s.io", [], "no"),
        ("delete", "services.serving.knative.dev", [], "no"), ("get", "configmaps", [], "no"),
        ("create", "configmaps", [], "yes"), ("delete", "pingsources.sources.knative.dev", [], "yes"), ("patch", "triggers.eventing.knative.dev", [], "yes"),
    ]:
        answer = control_plane.kubectl("auth", "can-i", verb, resource, *extra, "--all-namespaces", f"--as={account}", check=False).stdout.strip()
        assert answer == expected, f"{account} can-i {verb} {resource} {extra}: {answer}, expected {expected}"
    # Installed against a cluster that serves the API, the owned-objects policy comes with the release.
    policy = control_plane.get_json("validatingadmissionpolicy", f"{fullname}-owned-objects")
    assert account in policy["spec"]["matchConditions"][0]["expression"]
    assert control_plane.get_json("validatingadmissionpolicybinding", f"{fullname}-owned-objects")["spec"]["validationActions"] == ["Deny"]
    # The CRDs stay the control plane's: crds.install=false rendered none.
    crd = control_plane.get_json("crd", "aifunctions.aifn.dev")
    assert "meta.helm.sh/release-name" not in crd["metadata"].get("annotations", {})

    helm("uninstall", release, "--namespace", namespace, kubeconfig=control_plane.kubeconfig)
    assert control_plane.kubectl("get", "clusterrole", fullname, check=False).returncode != 0
    assert control_plane.kubectl("get", "deployment", fullname, "-n", namespace, check=False).returncode != 0
    assert control_plane.kubectl("get", "validatingadmissionpolicy", f"{fullname}-owned-objects", check=False).returncode != 0


def test_install_before_knative_skips_the_config_role_until_upgrade(control_plane: Any, namespace: str, release: str) -> None:
    knative = f"{namespace[:50]}-kn"  # not created yet: Knative is "not installed"
    result = install(control_plane, release, namespace, {"operator.knativeNamespace": knative})
    assert f"WARNING: namespace {knative} does not exist" in result.stdout
    assert control_plane.get_json("deployment", f"{release}-aifunction-operator", "-n", namespace)
    control_plane.kubectl("create", "namespace", knative)
    try:
        upgraded = helm("upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values", kubeconfig=control_plane.kubeconfig)
        assert "WARNING" not in upgraded.stdout
        role = control_plane.get_json("role", f"{release}-aifunction-operator-knative-config", "-n", knative)
        assert rules_of(role) == KNATIVE_CONFIG
    finally:
        control_plane.kubectl("delete", "namespace", knative, "--wait=false", check=False)


def _dockerfile_entrypoint() -> list[str]:
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return json.loads(line.removeprefix("ENTRYPOINT"))
    raise AssertionError("the Dockerfile has no ENTRYPOINT")


def operator_command(deployment: dict[str, Any], health_port: int, metrics_port: int) -> tuple[list[str], dict[str, str]]:
    """The command and environment the chart's Deployment gives the container, with local ports."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    entrypoint = _dockerfile_entrypoint()
    program = ROOT / ".venv" / "bin" / entrypoint[0]
    ports = {"--health-port": health_port, "--metrics-port": metrics_port}
    args = [f"{a.split('=')[0]}={ports[a.split('=')[0]]}" if a.split("=")[0] in ports else a for a in container["args"]]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["POD_NAME"] = "chart-rbac-test"
    return [str(program), *entrypoint[1:], *args], env


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_operator_with_exactly_the_charts_rbac_reconciles_a_function(
    control_plane: Any, namespace: str, knative_namespace: str, release: str, tmp_path: Path, mode: str
) -> None:
    functions = f"{namespace[:50]}-fn"
    control_plane.kubectl("create", "namespace", functions)
    values = {"operator.knativeNamespace": knative_namespace, "operator.logFormat": "text"}
    if mode == "namespaced":
        values["watchNamespaces"] = "{" + functions + "}"
    install(control_plane, release, namespace, values)
    fullname = f"{release}-aifunction-operator"
    deployment = control_plane.get_json("deployment", fullname, "-n", namespace)
    # The operator authenticates as the chart's ServiceAccount: only the chart's RBAC applies.
    identity = control_plane.service_account_identity(namespace, fullname)
    assert identity.username == f"system:serviceaccount:{namespace}:{fullname}"
    health, metrics = free_port(), free_port()
    argv, env = operator_command(deployment, health, metrics)
    log_path = tmp_path / "operator.log"
    process_env = {**os.environ, **env, "KUBECONFIG": str(identity.kubeconfig)}
    with open(log_path, "wb") as log:
        operator = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=process_env, start_new_session=True)
    def operator_log() -> str:
        return f"operator log:\n{log_path.read_text()[-4000:]}"

    try:
        wait_until("/readyz", lambda: operator.poll() is not None or http_ok(f"http://127.0.0.1:{health}/readyz"), 180,
                   interval=0.5, diagnose=operator_log)
        assert operator.poll() is None, f"the operator exited ({operator.returncode}):\n{log_path.read_text()}"

        control_plane.kubectl("apply", "-n", functions, "-f", str(ROOT / "examples" / "digits.yaml"))
        service = wait_until("the Knative Service", lambda: _get(control_plane, "services.serving.knative.dev", "digits", functions),
                             120, interval=0.5, diagnose=operator_log)
        assert service["metadata"]["ownerReferences"][0]["kind"] == "AIFunction"
        assert service["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["claimName"] == "aifn-models"
        function = wait_until("the AIFunction's status", lambda: _with_status(control_plane, functions), 120, interval=0.5,
                              diagnose=operator_log)
        reasons = {c["type"]: c.get("reason") for c in function["status"]["conditions"]}
        assert reasons, function["status"]
        assert not any("Forbidden" in (c.get("message") or "") for c in function["status"]["conditions"]), function["status"]

        control_plane.kubectl("delete", "aifunction", "digits", "-n", functions, "--wait=true", "--timeout=120s", timeout=130)
        assert _get(control_plane, "aifunction", "digits", functions) is None
    finally:
        operator.terminate()
        try:
            operator.wait(timeout=20)
        except subprocess.TimeoutExpired:
            operator.kill()
            operator.wait()
        control_plane.kubectl("delete", "namespace", functions, "--wait=false", check=False)
    log_text = log_path.read_text()
    forbidden = rbac_denials(log_text)
    assert not forbidden, "the chart's RBAC is missing a permission:\n" + "\n".join(forbidden[:20])
    assert operator.returncode == 0, f"the operator did not stop cleanly ({operator.returncode}):\n{log_text[-3000:]}"


def _get(control_plane: Any, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    result = control_plane.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def _with_status(control_plane: Any, namespace: str) -> dict[str, Any] | None:
    function = _get(control_plane, "aifunction", "digits", namespace)
    if function and (function.get("status") or {}).get("conditions") and function["status"].get("observedGeneration"):
        return function
    return None


def _pod_from_deployment(objects: list[dict[str, Any]], namespace: str) -> dict[str, Any]:
    template = copy.deepcopy(one(objects, "Deployment")["spec"]["template"])
    template["spec"]["serviceAccountName"] = "default"  # the pod, not the RBAC, is under test here
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "operator-pss", "namespace": namespace, **template["metadata"]}, "spec": template["spec"]}


def test_operator_pod_passes_the_restricted_pod_security_standard(control_plane: Any, namespace: str) -> None:
    """kube-apiserver's own PodSecurity admission judges the chart's pod (a server-side dry run)."""
    control_plane.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                          "pod-security.kubernetes.io/warn=restricted")
    pod = _pod_from_deployment(render(), namespace)
    accepted = control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(pod), check=False)
    assert accepted.returncode == 0, accepted.stderr
    assert "Warning" not in accepted.stderr, accepted.stderr
    # The same check refuses a pod that is not hardened, so it is not vacuous.
    weakened = copy.deepcopy(pod)
    del weakened["spec"]["containers"][0]["securityContext"]["capabilities"]
    weakened["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = control_plane.kubectl("create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(weakened), check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr


# The CRD finalizer lists every instance with an unpaginated read, which kube-apiserver serves only from a
# ready watch cache (KEP-4568); on a cache still initializing it gets 429 "storage is (re)initializing" and
# requeues with exponential backoff, so a CRD deleted seconds after it was created can stay Terminating for
# minutes (seen here about one run in six). Real clusters do not delete CRDs that young; the tests wait for the
# caches instead of for the backoff.
CRD_LISTS = {
    "aifunctions.aifn.dev": "/apis/aifn.dev/v1alpha1/aifunctions",
    "clusterkopfpeerings.kopf.dev": "/apis/kopf.dev/v1/clusterkopfpeerings",
    "kopfpeerings.kopf.dev": "/apis/kopf.dev/v1/kopfpeerings",
}


def wait_for_watch_caches(plane: "ControlPlane", crds: tuple[str, ...], deadline_s: float = 60) -> None:
    """Wait until kube-apiserver serves an unpaginated list of each CRD's instances (its watch cache is ready)."""
    deadline = time.monotonic() + deadline_s
    for crd in crds:
        raw = ("get", "--raw", CRD_LISTS[crd])
        wait_until(f"the watch cache for {crd}", lambda raw=raw: plane.kubectl(*raw, check=False).returncode == 0,
                   max(0.0, deadline - time.monotonic()), interval=0.2,
                   diagnose=lambda raw=raw: plane.kubectl(*raw, check=False).stderr)


def wait_until_gone(plane: "ControlPlane", crds: tuple[str, ...], deadline_s: float) -> None:
    """Wait for CRD deletion (the apiserver's instance clean-up finalizer); on timeout show why."""
    def left() -> list[str]:
        return [c for c in crds if plane.kubectl("get", "crd", c, check=False).returncode == 0]

    def states() -> str:
        return str({c: plane.kubectl("get", "crd", c, "-o", "jsonpath={.status.conditions}", check=False).stdout for c in left()})

    wait_until("the CRDs deleted", lambda: not left(), deadline_s, interval=1.0, diagnose=states)


@pytest.mark.slow
def test_chart_installs_upgrades_and_keeps_its_crds(tmp_path: Path) -> None:
    """On a control plane without our CRDs: the chart creates them, `helm upgrade` changes them, uninstall keeps them."""
    from support.controlplane import ControlPlane, MissingBinaries

    try:
        plane = ControlPlane(crd_paths=[], workdir=tmp_path / "plane")
    except MissingBinaries as missing:
        pytest.skip(str(missing))
    with plane:
        kubeconfig = plane.kubeconfig
        helm("install", "aifn", str(CHART), "--namespace", "aifn-system", "--create-namespace", "--set", "rbac.knativeConfigRole=false", kubeconfig=kubeconfig)
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/aifunctions.aifn.dev", "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev", timeout=70)
        crd = plane.get_json("crd", "aifunctions.aifn.dev")
        assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == "aifn"
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        columns = [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]

        # A newer chart whose CRD has one more printer column: `helm upgrade` must update the CRD.
        newer = tmp_path / "chart"
        shutil.copytree(CHART, newer)
        template = newer / "templates" / "crds" / "aifunctions.aifn.dev.yaml"
        text = template.read_text()
        assert "    additionalPrinterColumns:\n" in text
        template.write_text(text.replace("    additionalPrinterColumns:\n", "    additionalPrinterColumns:\n    - name: UpgradeProbe\n      type: string\n      jsonPath: .spec.model.name\n", 1))
        helm("upgrade", "aifn", str(newer), "--namespace", "aifn-system", "--reuse-values", kubeconfig=kubeconfig)
        upgraded = plane.get_json("crd", "aifunctions.aifn.dev")
        assert [c["name"] for c in upgraded["spec"]["versions"][0]["additionalPrinterColumns"]] == ["UpgradeProbe", *columns]

        helm("uninstall", "aifn", "--namespace", "aifn-system", kubeconfig=kubeconfig)
        assert plane.kubectl("get", "deployment", "aifn-aifunction-operator", "-n", "aifn-system", check=False).returncode != 0
        assert plane.get_json("crd", "aifunctions.aifn.dev")["metadata"]["name"] == "aifunctions.aifn.dev", "crds.keep must keep the CRD"

        # Without crds.keep, uninstalling removes them.
        crds = ("aifunctions.aifn.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
        wait_for_watch_caches(plane, crds)
        plane.kubectl("delete", "crd", *crds, "--wait=false", timeout=60)
        wait_until_gone(plane, crds, deadline_s=240)
        helm("install", "aifn", str(CHART), "--namespace", "aifn-system", "--set", "rbac.knativeConfigRole=false", "--set", "crds.keep=false", kubeconfig=kubeconfig)
        assert "helm.sh/resource-policy" not in plane.get_json("crd", "aifunctions.aifn.dev")["metadata"].get("annotations", {})
        wait_for_watch_caches(plane, crds)
        helm("uninstall", "aifn", "--namespace", "aifn-system", "--wait", kubeconfig=kubeconfig)
        assert plane.kubectl("get", "crd", "aifunctions.aifn.dev", check=False).returncode != 0, "crds.keep=false must delete the CRD"
