"""The operator's handler-code ConfigMap, PingSources and Triggers (issue #8) on a real control plane.

The session's control plane has Knative Eventing's PingSource, Trigger and Broker CRDs but no
Eventing controller: where Eventing would write a PingSource's or Trigger's status, the test
writes it through the status subresource (`mark_eventing_ready`), as for Services in
test_operator.py. Garbage collection is the real kube-controller-manager's. One test starts a
second control plane without Eventing's CRDs.
"""

from __future__ import annotations

import copy
import secrets
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render import render
from aifunction_operator.render.metadata import child_name
from aifunction_operator.spec import parse_function
from support.controlplane import BIN, ROOT, ControlPlane
from support.kube_client import TestClient, condition, function
from support.logs import rbac_denials
from support.operator_process import OperatorProcess
from support.processes import wait_until

pytestmark = pytest.mark.integration
PROMPT = 10.0
EVENTING = {"PingSource": ("sources.knative.dev", "v1", "pingsources"), "Trigger": ("eventing.knative.dev", "v1", "triggers")}
FN_HANDLER, FN_NIGHTLY, FN_UPLOADS = (child_name("fn", part) for part in ("handler", "nightly", "uploads"))  # the children's names
CODE = "import json\ndef handle(event, context):\n    return {'statusCode': 200, 'body': json.dumps(event)}\n"


def lambda_spec(schedules: list[dict[str, Any]] | None = None, events: list[dict[str, Any]] | None = None, handler: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CPU function with inline handler code, one schedule and one event subscription by default."""
    return {
        "model": {"name": "digits", "repository": "s3://models/triton"},
        "handler": handler or {"entrypoint": "app:handle", "code": CODE},
        "triggers": {
            "schedules": [{"name": "nightly", "cron": "0 3 * * *", "data": '{"pixels": []}'}] if schedules is None else schedules,
            "events": [{"name": "uploads", "broker": "default", "filter": {"attributes": {"type": "dev.aifn.image.uploaded"}}}] if events is None else events,
        },
    }


def get_eventing(kube: TestClient, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    group, version, plural = EVENTING[kind]
    return kube._get(lambda: kube.custom.get_namespaced_custom_object(group, version, namespace, plural, name))


def get_configmap(kube: TestClient, namespace: str, name: str) -> dict[str, Any] | None:
    return kube._get(lambda: kube.api.sanitize_for_serialization(kube.core.read_namespaced_config_map(name, namespace)))


def mark_eventing_ready(kube: TestClient, kind: str, namespace: str, name: str, ready: str = "True", reason: str | None = None, message: str | None = None) -> None:
    """Write the status Knative Eventing's controller writes (simulated: no Eventing controller runs here)."""
    group, version, plural = EVENTING[kind]
    obj = get_eventing(kube, kind, namespace, name)
    assert obj is not None, f"{kind} {namespace}/{name} does not exist"
    cond: dict[str, Any] = {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    cond.update({k: v for k, v in (("reason", reason), ("message", message)) if v})
    status = {"observedGeneration": obj["metadata"]["generation"], "conditions": [cond]}
    kube.custom.patch_namespaced_custom_object_status(group, version, namespace, plural, name, {"status": status})


def function_where(kube: TestClient, namespace: str, name: str, check: Any, what: str, timeout: float = PROMPT) -> dict[str, Any]:
    return wait_until(f"AIFunction {namespace}/{name}: {what}", lambda: (fn := kube.get_function(namespace, name)) is not None and check(fn) and fn, timeout, diagnose=lambda: str((kube.get_function(namespace, name) or {}).get("status")))


def state(fn: dict[str, Any], type_: str) -> tuple[str, str]:
    cond = condition(fn, type_)
    return cond.get("status", ""), cond.get("reason", "")


def children_exist(kube: TestClient, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return wait_until(
        "the ConfigMap, PingSource and Trigger",
        lambda: all(found := (get_configmap(kube, namespace, child_name(name, "handler")), get_eventing(kube, "PingSource", namespace, child_name(name, "nightly")), get_eventing(kube, "Trigger", namespace, child_name(name, "uploads")))) and found,
        PROMPT,
    )


def revert_trigger_edit(kube: TestClient, namespace: str) -> None:
    """Edit the Trigger FN_UPLOADS' filter and wait until the operator puts it back."""
    group, version, plural = EVENTING["Trigger"]
    broker = (get_eventing(kube, "Trigger", namespace, FN_UPLOADS) or {})["spec"]["broker"]
    kube.custom.patch_namespaced_custom_object(group, version, namespace, plural, FN_UPLOADS, {"spec": {"filter": {"attributes": {"type": "edited"}}}})
    wait_until("the Trigger's filter restored", lambda: (t := get_eventing(kube, "Trigger", namespace, FN_UPLOADS)) and t["spec"]["filter"]["attributes"]["type"] == "dev.aifn.image.uploaded" and t["spec"]["broker"] == broker, PROMPT)


def ksvc_check(service: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    tool = BIN / "ksvc-check"
    if not tool.exists():
        pytest.skip(f"{tool} missing; run `make tools`")
    clean = copy.deepcopy(service)
    clean.pop("status", None)
    clean["metadata"] = {k: v for k, v in clean["metadata"].items() if k in ("name", "namespace", "labels", "annotations", "ownerReferences")}
    return subprocess.run([str(tool), "-"], input=yaml.safe_dump(clean), capture_output=True, text=True, timeout=60)


def test_handler_and_triggers_become_owned_children_and_readiness_aggregates(kube: TestClient, namespace: str, start_operator: Any) -> None:
    op: OperatorProcess = start_operator()
    created = kube.create_function(namespace, function("fn", lambda_spec()))
    uid = created["metadata"]["uid"]
    config_map, ping, trigger = children_exist(kube, namespace, "fn")
    svc = wait_until("the Knative Service", lambda: kube.get_service(namespace, "fn"), PROMPT)

    owner = [{"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "name": "fn", "uid": uid, "controller": True, "blockOwnerDeletion": True}]
    for child in (config_map, ping, trigger):
        assert child["metadata"]["ownerReferences"] == owner
        assert child["metadata"]["labels"]["aifn.dev/function"] == "fn"
        assert {m["manager"]: m["operation"] for m in child["metadata"]["managedFields"]}.get("aifn-operator") == "Apply"
    assert config_map["data"] == {"app.py": CODE}
    assert ping["spec"]["schedule"] == "0 3 * * *" and ping["spec"]["sink"]["ref"]["name"] == "fn"
    assert trigger["spec"]["broker"] == "default" and trigger["spec"]["subscriber"]["ref"] == {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "fn"}
    mounted = {v["name"]: v for v in svc["spec"]["template"]["spec"]["volumes"]}
    assert mounted["handler-code"]["configMap"]["name"] == FN_HANDLER
    checked = ksvc_check(svc)
    assert checked.returncode == 0 and ": valid" in checked.stdout, checked.stdout + checked.stderr

    # Eventing has not reported yet; the Service is ready: Ready waits on the triggers.
    kube.mark_service_ready(namespace, "fn")
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "ServiceReady") == ("True", "ServiceReady"), "ServiceReady True")
    assert state(fn, "TriggersReady") == ("Unknown", "EventingNotReady") and state(fn, "Ready") == ("Unknown", "EventingNotReady")

    mark_eventing_ready(kube, "PingSource", namespace, FN_NIGHTLY)
    mark_eventing_ready(kube, "Trigger", namespace, FN_UPLOADS)
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "Ready") == ("True", "Ready"), "Ready True")
    assert state(fn, "TriggersReady") == ("True", "TriggersReady") and fn["status"]["reason"] == "Ready"

    # Eventing reports a Trigger failing: its reason and message surface, Ready is False.
    mark_eventing_ready(kube, "Trigger", namespace, FN_UPLOADS, "False", "BrokerDoesNotExist", 'Broker "default" does not exist')
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "Ready") == ("False", "BrokerDoesNotExist"), "Ready False BrokerDoesNotExist")
    assert condition(fn, "TriggersReady")["message"] == f'Trigger {FN_UPLOADS}: Broker "default" does not exist'
    # The gauge moves after the pass that wrote the status returns (runtime.reconcile), so a scrape
    # right after seeing the status can come first: wait for it (a CI run caught that race).
    wanted = 'aifn_functions{ready="False",reason="BrokerDoesNotExist"} 1.0'
    wait_until("the aifn_functions gauge to count the function as BrokerDoesNotExist",
               lambda: wanted in op.metrics(), PROMPT, diagnose=op.metrics)


def test_a_trigger_eventing_could_not_resolve_is_nudged_once_the_service_has_an_address(kube: TestClient, namespace: str, start_operator: Any) -> None:
    """knative/eventing#5374: Eventing does not re-resolve a subscriber that became addressable while
    it backed off. Its status is written here as Eventing writes it (no Eventing controller runs)."""
    op: OperatorProcess = start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    _, _, trigger = children_exist(kube, namespace, "fn")
    group, version, plural = EVENTING["Trigger"]
    unresolved = {"type": "SubscriberResolved", "status": "False", "reason": "Unable to get the Subscriber's URI",
                  "message": "address not set for Kind = Service", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    kube.custom.patch_namespaced_custom_object_status(group, version, namespace, plural, FN_UPLOADS, {"status": {
        "observedGeneration": trigger["metadata"]["generation"], "conditions": [unresolved, {**unresolved, "type": "Ready"}]}})
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "TriggersReady")[1] == "Unable to get the Subscriber's URI",
                        "Eventing's reason in TriggersReady")
    assert "aifn.dev/subscriber-address" not in (get_eventing(kube, "Trigger", namespace, FN_UPLOADS) or {})["metadata"].get("annotations", {}), \
        "nudged before the Service had an address"
    kube.mark_service_ready(namespace, "fn")  # Knative sets status.address
    nudged = wait_until("the Trigger annotated with the Service's address", lambda: (
        (get_eventing(kube, "Trigger", namespace, FN_UPLOADS) or {}).get("metadata", {}).get("annotations", {})
        .get("aifn.dev/subscriber-address")), PROMPT, diagnose=op.log_tail)
    assert nudged == f"http://fn.{namespace}.svc.cluster.local"
    ping = get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) or {}
    assert "aifn.dev/subscriber-address" not in ping["metadata"].get("annotations", {}), "a PingSource Eventing did not fail on is left alone"
    before = get_eventing(kube, "Trigger", namespace, FN_UPLOADS)["metadata"]["resourceVersion"]
    kube.mark_service_ready(namespace, "fn", "True")  # another pass over the same address: no second write
    time.sleep(2)
    assert get_eventing(kube, "Trigger", namespace, FN_UPLOADS)["metadata"]["resourceVersion"] == before
    assert op.alive_or_fail()


def test_child_drift_is_restored_and_unwanted_children_are_pruned(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    _, ping, trigger = children_exist(kube, namespace, "fn")

    # An edited schedule is reverted.
    group, version, plural = EVENTING["PingSource"]
    kube.custom.patch_namespaced_custom_object(group, version, namespace, plural, FN_NIGHTLY, {"spec": {"schedule": "* * * * *"}})
    wait_until("the PingSource's schedule restored", lambda: (p := get_eventing(kube, "PingSource", namespace, FN_NIGHTLY)) and p["spec"]["schedule"] == "0 3 * * *", PROMPT)
    # An edited Trigger is reverted (this also shows the operator's Trigger watch is live: kopf
    # may still be (re)connecting it, and a deletion before that is seen only at the resync);
    # a deleted Trigger is recreated; a ConfigMap stripped of our label is restored.
    revert_trigger_edit(kube, namespace)
    group, version, plural = EVENTING["Trigger"]
    kube.custom.delete_namespaced_custom_object(group, version, namespace, plural, FN_UPLOADS)
    wait_until("the Trigger recreated", lambda: (t := get_eventing(kube, "Trigger", namespace, FN_UPLOADS)) and t["metadata"]["uid"] != trigger["metadata"]["uid"], PROMPT)
    kube.core.patch_namespaced_config_map(FN_HANDLER, namespace, [{"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1managed-by"}])
    wait_until("the ConfigMap's label restored", lambda: (c := get_configmap(kube, namespace, FN_HANDLER)) and c["metadata"]["labels"].get("app.kubernetes.io/managed-by") == "aifn-operator", PROMPT)

    # Removing the schedule deletes its PingSource; the Trigger stays.
    kube.patch_function(namespace, "fn", {"spec": {"triggers": {"schedules": None}}})
    wait_until("the PingSource deleted", lambda: get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) is None, PROMPT)
    assert get_eventing(kube, "Trigger", namespace, FN_UPLOADS) is not None

    # Inline code replaced by a user's ConfigMap: ours goes, theirs is mounted and left alone.
    theirs = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="shared-code"), data={"app.py": CODE})
    kube.core.create_namespaced_config_map(namespace, theirs)
    kube.patch_function(namespace, "fn", {"spec": {"handler": {"code": None, "configMap": {"name": "shared-code", "key": "app.py"}}}})
    wait_until("the handler ConfigMap deleted", lambda: get_configmap(kube, namespace, FN_HANDLER) is None, PROMPT)
    svc = wait_until("the Service mounting shared-code", lambda: (s := kube.get_service(namespace, "fn")) and any((v.get("configMap") or {}).get("name") == "shared-code" for v in s["spec"]["template"]["spec"]["volumes"]) and s, PROMPT)
    assert svc is not None and get_configmap(kube, namespace, "shared-code") is not None
    assert not (get_configmap(kube, namespace, "shared-code") or {})["metadata"].get("ownerReferences")


def test_a_child_deleted_while_a_pass_runs_is_recreated(kube: TestClient, namespace: str, start_operator: Any) -> None:
    """Regression: the pass triggered by the PingSource edit must not put the deleted Trigger back in
    the operator's cache (it did, and the Trigger stayed deleted until the resync)."""
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    children_exist(kube, namespace, "fn")
    for attempt in range(3):
        trigger = get_eventing(kube, "Trigger", namespace, FN_UPLOADS) or {}
        group, version, plural = EVENTING["PingSource"]
        kube.custom.patch_namespaced_custom_object(group, version, namespace, plural, FN_NIGHTLY, {"spec": {"schedule": f"{attempt} * * * *"}})
        group, version, plural = EVENTING["Trigger"]
        kube.custom.delete_namespaced_custom_object(group, version, namespace, plural, FN_UPLOADS)
        wait_until(f"the Trigger recreated (attempt {attempt})", lambda: (t := get_eventing(kube, "Trigger", namespace, FN_UPLOADS)) and t["metadata"]["uid"] != trigger["metadata"]["uid"], PROMPT)
        wait_until("the schedule restored", lambda: (get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) or {}).get("spec", {}).get("schedule") == "0 3 * * *", PROMPT)


def test_deleting_the_function_garbage_collects_every_child(kube: TestClient, namespace: str, start_operator: Any) -> None:
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    children_exist(kube, namespace, "fn")
    kube.delete_function(namespace, "fn")
    wait_until(
        "the Service, ConfigMap, PingSource and Trigger garbage-collected",
        lambda: kube.get_service(namespace, "fn") is None and get_configmap(kube, namespace, FN_HANDLER) is None
        and get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) is None and get_eventing(kube, "Trigger", namespace, FN_UPLOADS) is None,
        60,
    )


def test_a_disabled_probing_flag_blocks_the_service_and_its_children(kube: TestClient, namespace: str, start_operator: Any) -> None:
    kube.put_configmap(namespace, "config-features", {"multi-container-probing": "disabled"})
    start_operator()
    kube.create_function(namespace, function("fn", lambda_spec()))
    fn = function_where(kube, namespace, "fn", lambda f: state(f, "Ready") == ("False", "KnativeFeatureDisabled"), "KnativeFeatureDisabled")
    assert f'`multi-container-probing: "enabled"` in ConfigMap {namespace}/config-features' in condition(fn, "KnativeFeaturesReady")["message"]
    assert state(fn, "TriggersReady") == ("False", "NotCreated")
    assert kube.get_service(namespace, "fn") is None and get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) is None
    kube.put_configmap(namespace, "config-features", {"multi-container-probing": "enabled"})
    children_exist(kube, namespace, "fn")


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_with_only_the_charts_rbac_a_function_with_triggers_is_reconciled(mode: str, control_plane: ControlPlane, kube: TestClient, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    helm = BIN / "helm"
    if not helm.exists():
        pytest.skip(f"{helm} missing; run `make tools`")
    release = f"trig-{secrets.token_hex(3)}"
    values = [f"operator.knativeNamespace={namespace}"] + ([f"watchNamespaces={{{namespace}}}"] if mode == "namespaced" else [])
    sets = [arg for value in values for arg in ("--set", value)]
    out = subprocess.run([str(helm), "template", release, str(ROOT / "charts" / "aifunction-operator"), "--namespace", namespace, *sets], capture_output=True, text=True, check=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d and d.get("kind") in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}]
    manifest = tmp_path / "rbac.yaml"
    manifest.write_text(yaml.safe_dump_all(docs))
    control_plane.kubectl("apply", "-n", namespace, "-f", str(manifest))
    account = next(d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount")
    identity = control_plane.service_account_identity(namespace, account)

    scope = () if mode == "cluster" else None  # cluster: all namespaces, as the chart's ClusterRole allows
    op = start_operator(kubeconfig=identity.kubeconfig, scope=scope)
    kube.create_function(namespace, function("fn", lambda_spec()))
    children_exist(kube, namespace, "fn")
    kube.mark_service_ready(namespace, "fn")
    mark_eventing_ready(kube, "PingSource", namespace, FN_NIGHTLY)
    mark_eventing_ready(kube, "Trigger", namespace, FN_UPLOADS)
    function_where(kube, namespace, "fn", lambda f: state(f, "Ready") == ("True", "Ready"), "Ready True")
    revert_trigger_edit(kube, namespace)
    group, version, plural = EVENTING["Trigger"]
    kube.custom.delete_namespaced_custom_object(group, version, namespace, plural, FN_UPLOADS)
    wait_until("the Trigger recreated (watch + apply)", lambda: get_eventing(kube, "Trigger", namespace, FN_UPLOADS), PROMPT, diagnose=op.log_tail)
    # Edited while the operator is down: on resume it lists the function's children and prunes.
    assert op.stop() == 0
    kube.patch_function(namespace, "fn", {"spec": {"triggers": {"schedules": None}, "handler": {"code": None, "configMap": {"name": "shared", "key": "app.py"}}}})
    logs = [op.log_tail(200_000)]
    op = start_operator(kubeconfig=identity.kubeconfig, scope=scope)
    wait_until("pruned on resume with the chart's RBAC", lambda: get_eventing(kube, "PingSource", namespace, FN_NIGHTLY) is None and get_configmap(kube, namespace, FN_HANDLER) is None, PROMPT, diagnose=op.log_tail)
    log = "\n".join([*logs, op.log_tail(200_000)])
    assert not rbac_denials(log), log
    assert op.stop() == 0


def test_without_knative_eventing_functions_without_triggers_still_work(tmp_path: Path) -> None:
    """A cluster with Knative Serving's CRD but not Eventing's: the operator runs on."""
    crds = sorted((ROOT / "crds").glob("*.yaml")) + [BIN / "knative-crds" / "serving-service.yaml"]
    try:
        plane = ControlPlane(crd_paths=crds)
    except Exception as exc:  # noqa: BLE001  (MissingBinaries and the like)
        pytest.skip(f"no control plane: {exc}")
    with plane:
        kube = TestClient(plane.kubeconfig)
        namespace = "apps"
        plane.kubectl("create", "namespace", namespace)
        op = OperatorProcess(plane.kubeconfig, tmp_path / "operator.log", [f"--namespace={namespace}", f"--knative-namespace={namespace}", "--standalone"]).start()
        try:
            kube.create_function(namespace, function("plain"))
            wait_until("the plain function's Service", lambda: kube.get_service(namespace, "plain"), PROMPT, diagnose=op.log_tail)
            kube.mark_service_ready(namespace, "plain")
            fn = function_where(kube, namespace, "plain", lambda f: state(f, "Ready") == ("True", "Ready"), "Ready True without Eventing")
            assert state(fn, "TriggersReady") == ("True", "NoTriggers")

            kube.create_function(namespace, function("timed", lambda_spec()))
            fn = function_where(kube, namespace, "timed", lambda f: state(f, "TriggersReady")[1] == "EventingNotInstalled", "EventingNotInstalled")
            message = condition(fn, "TriggersReady")["message"]
            assert "pingsources.sources.knative.dev" in message and "triggers.eventing.knative.dev" in message and "Knative Eventing" in message
            assert state(fn, "Ready") == ("False", "EventingNotInstalled")
            assert get_configmap(kube, namespace, child_name("timed", "handler")) is not None, "the handler code is still applied"

            # Eventing installed later: its CRDs becoming Established make the operator re-check every
            # function at once (the periodic resync is 300 s away), and so does their removal.
            eventing_crds = [BIN / "knative-crds" / f"eventing-{kind}.yaml" for kind in ("pingsource", "trigger")]
            plane.kubectl("apply", "--server-side", *[arg for path in eventing_crds for arg in ("-f", str(path))])
            fn = function_where(kube, namespace, "timed", lambda f: state(f, "TriggersReady")[1] == "EventingNotReady",
                                "EventingNotReady once Eventing's CRDs are there (no Eventing controller reports here)")
            assert get_eventing(kube, "PingSource", namespace, child_name("timed", "nightly")) is not None
            plane.kubectl("delete", "crd", "pingsources.sources.knative.dev", "triggers.eventing.knative.dev")
            fn = function_where(kube, namespace, "timed", lambda f: state(f, "TriggersReady")[1] == "EventingNotInstalled",
                                "EventingNotInstalled again once Eventing's CRDs are gone")
            assert "re-checking every function" in op.log_tail(200_000)
            assert op.alive_or_fail()
        finally:
            op.stop()
            print(op.log_tail())
