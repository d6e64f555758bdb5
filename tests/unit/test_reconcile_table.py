"""One reconcile pass, case by case, against an in-memory API client (Knative's reconciler TableTest is the model).

Each row names the cluster before the pass (`objects`, built from what a first pass left when
`after_first_pass`), the function, Knative's settings, and what the pass must do: the writes
in order, the status reason and conditions, the Events. The same passes run against a real
kube-apiserver in tests/integration/test_operator*.py; here every branch of observe, decide,
act and report is reached in milliseconds.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifunction_operator.controller.kube_client import ApiError
from aifunction_operator.controller.preflight import KnativeSettings
from aifunction_operator.controller.reconcile import Cached, Outcome, reconcile
from aifunction_operator.controller.status import conditions_by_type
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render.metadata import child_name

from support.fake_kube_client import FakeKubeClient

CASES = Path(__file__).resolve().parent / "cases"
NOW = "2026-11-29T12:00:00Z"
ALL_ON = {"multi-container": "enabled", "multi-container-probing": "enabled", "kubernetes.podspec-persistent-volume-claim": "enabled",
          "kubernetes.podspec-init-containers": "enabled", "kubernetes.podspec-volumes-emptydir": "enabled",
          "kubernetes.podspec-affinity": "enabled", "kubernetes.podspec-tolerations": "enabled", "kubernetes.podspec-nodeselector": "enabled"}
KNATIVE = KnativeSettings(features=ALL_ON, autoscaler={})
EVENTING = ("sources.knative.dev/v1", "eventing.knative.dev/v1")
Manifest = dict[str, Any]


def function(case: str, **spec_changes: Any) -> Manifest:
    """An AIFunction from tests/unit/cases, in namespace `apps` with a uid, as the API server holds it."""
    body = yaml.safe_load((CASES / case).read_text())
    body["metadata"] = {"namespace": "apps", "uid": f"uid-{body['metadata']['name']}", "generation": 1, **body["metadata"]}
    body["metadata"]["namespace"] = "apps"
    body["spec"].update(spec_changes)
    return body


MINIMAL = function("minimal-defaults.yaml")
FALLBACK = function("gpu-products-fallback.yaml")  # 1 GPU: NVIDIA-L4, else NVIDIA-A10G, else Tesla-T4
GPU_NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.product": "NVIDIA-A10G"}}}
NO_GPU_NODE = "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector."
HANDLER = function("handler-inline-triggers.yaml")  # a ConfigMap, a PingSource `nightly`, a Trigger `uploads`
CM, NIGHTLY, UPLOADS = (child_name("digits-lambda", part) for part in ("handler", "nightly", "uploads"))


def foreign(kind: str, api_version: str, name: str) -> Manifest:
    """An object of a name the function needs, made by someone else."""
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": "apps"}, "spec": {}}


def with_status(client: FakeKubeClient, plural: str, name: str, status: Manifest) -> None:
    """What Knative's controllers would write on an object."""
    for (p, _, n), obj in client.objects.items():
        if (p, n) == (plural, name):
            obj["status"] = status


@dataclass(frozen=True)
class Case:
    name: str
    function: Manifest
    objects: tuple[Manifest, ...] = ()
    after_first_pass: bool = False  # start from what one pass left (the function's children exist, its status is written)
    change: Callable[[FakeKubeClient, Manifest], None] | None = None  # edits the cluster before the pass
    knative: KnativeSettings = KNATIVE
    unserved: tuple[str, ...] = ()
    failures: dict[tuple[str, str], ApiError] = field(default_factory=dict)
    function_exists: bool = True
    running_on: tuple[str, ...] = ()  # nodes the pod watch saw the function's pods running on
    unschedulable: str | None = None  # the scheduler's message the pod watch saw
    # What the pass must do.
    writes: tuple[tuple[str, str], ...] = ()
    reason: str | None = None
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)  # type -> (status, reason)
    message: tuple[str, str] | None = None  # (condition type, text its message contains)
    events: tuple[str, ...] = ()
    status: dict[str, Any] = field(default_factory=dict)  # status fields and their values
    traffic: list[dict[str, Any]] | None = None  # the Service's traffic targets after the pass
    raises: int | None = None  # the ApiError status the pass raises (transient: kopf retries)
    gone: bool = False

    @property
    def needs_gpu_product(self) -> bool:
        return "gpuProduct" in self.status


def add_stale_ping_source(client: FakeKubeClient, body: Manifest) -> None:
    """A schedule the function dropped: a PingSource it controls that it no longer renders."""
    live = next(obj for (plural, _, name), obj in client.objects.items() if (plural, name) == ("pingsources", NIGHTLY))
    stale = copy.deepcopy(live)
    stale["metadata"] = {**stale["metadata"], "name": "digits-lambda-hourly", "uid": "uid-hourly"}
    client.put(stale)


def unresolve_trigger(client: FakeKubeClient, body: Manifest) -> None:
    """Eventing left the Trigger unresolved; the Service has an address now (knative/eventing#5374)."""
    with_status(client, "services", "digits-lambda", {"address": {"url": "http://digits-lambda.apps.svc.cluster.local"}})
    with_status(client, "triggers", UPLOADS, {"conditions": [{"type": "SubscriberResolved", "status": "False"}]})


def start_canary(client: FakeKubeClient, body: Manifest) -> None:
    """minimal-00001 is rolled out (Knative reports it Ready); the user asks for a 20% canary."""
    with_status(client, "services", "minimal", {"observedGeneration": 1, "latestCreatedRevisionName": "minimal-00001",
                                                "latestReadyRevisionName": "minimal-00001", "conditions": [{"type": "Ready", "status": "True"}]})
    body["status"]["rollout"] = {"stableRevision": "minimal-00001"}
    body["spec"]["rollout"] = {"canaryTrafficPercent": 20}


# A window 11:55-13:00 (warm from 11:55, open 12:00-13:00) around NOW, 12:00 UTC.
PREWARM = function("minimal-defaults.yaml", scaling={"minReplicas": 1, "schedules": [
    {"name": "noon", "cron": "0 12 * * *", "duration": "1h", "minReplicas": 3}]})
NOON = {"name": "noon", "warmFrom": "2026-11-29T11:55:00Z", "start": "2026-11-29T12:00:00Z", "end": "2026-11-29T13:00:00Z", "minReplicas": 3}
TOMORROW = {**NOON, **{k: NOON[k].replace("-29T", "-30T") for k in ("warmFrom", "start", "end")}}


def revision(name: str, min_scale: str, *, has_run: bool = True) -> Manifest:
    """A Revision as Knative keeps it; one that never had a pod has no status.desiredReplicas."""
    return {"apiVersion": "serving.knative.dev/v1", "kind": "Revision", "metadata": {
        "name": name, "namespace": "apps", "labels": {"serving.knative.dev/service": "minimal"},
        "annotations": {"autoscaling.knative.dev/min-scale": min_scale, "autoscaling.knative.dev/metric": "concurrency"}},
        "status": {"actualReplicas": 0, **({"desiredReplicas": 0} if has_run else {})}}


def routed_revisions(client: FakeKubeClient, body: Manifest) -> None:
    """Knative created minimal-00001 (an earlier window raised it to 3) and routes all traffic to minimal-00002."""
    client.put(revision("minimal-00001", "3"))
    client.put(revision("minimal-00002", "1"))
    with_status(client, "services", "minimal", {"traffic": [{"revisionName": "minimal-00002", "percent": 100}]})


def never_run_revision(client: FakeKubeClient, body: Manifest) -> None:
    """The routed revision was created with initialReplicas 0 and never had a pod."""
    client.put(revision("minimal-00001", "1", has_run=False))
    with_status(client, "services", "minimal", {"traffic": [{"revisionName": "minimal-00001", "percent": 100}]})


def window_over(client: FakeKubeClient, body: Manifest) -> None:
    """The schedule was removed after a window raised the routed revision: it is put back."""
    routed_revisions(client, body)
    client.objects[("revisions", "apps", "minimal-00002")]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "3"
    body["spec"]["scaling"] = {"minReplicas": 1}
    body["status"]["prewarm"] = {"minReplicas": 3, "windows": [NOON]}


def drift_service_image(client: FakeKubeClient, body: Manifest) -> None:
    """Someone edited a field the operator renders."""
    with_status(client, "services", "digits-lambda", {})
    service = next(obj for (plural, _, _), obj in client.objects.items() if plural == "services")
    service["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"


TABLE = [
    Case("fresh function: the Service is created and the status written", MINIMAL,
         writes=(("apply", "Service/minimal"), ("status", "aifunctions/minimal")),
         conditions={"SpecValid": ("True", "Valid"), "ServiceReady": ("Unknown", "Deploying"), "Ready": ("Unknown", "Deploying")}),
    Case("fresh function with handler and triggers: ConfigMap, Service, PingSource, Trigger in that order", HANDLER,
         writes=(("apply", f"ConfigMap/{CM}"), ("apply", "Service/digits-lambda"), ("apply", f"PingSource/{NIGHTLY}"),
                 ("apply", f"Trigger/{UPLOADS}"), ("status", "aifunctions/digits-lambda")),
         conditions={"TriggersReady": ("Unknown", "EventingNotReady")}),
    Case("foreign Service: nothing is applied, the status says whose name it is", MINIMAL,
         objects=(foreign("Service", "serving.knative.dev/v1", "minimal"),),
         writes=(("status", "aifunctions/minimal"),), reason="NotOwned",
         conditions={"ServiceReady": ("False", "NotOwned")}, message=("ServiceReady", "was not created by this AIFunction")),
    Case("apply failure: the server's message is in the status", MINIMAL,
         failures={("apply", "Service/minimal"): ApiError(422, "spec.template.spec.containers[0].image: Required value")},
         writes=(("apply", "Service/minimal"), ("status", "aifunctions/minimal")), reason="ApplyFailed",
         conditions={"ServiceReady": ("False", "ApplyFailed")}, message=("ServiceReady", "Required value")),
    Case("transient apply error: the pass raises and writes no status (kopf retries)", MINIMAL,
         failures={("apply", "Service/minimal"): ApiError(503, "etcdserver: leader changed")},
         writes=(("apply", "Service/minimal"),), raises=503),
    Case("invalid spec: nothing applied, SpecValid False naming the field, a Warning Event", function("minimal-defaults.yaml", model={"repository": "ftp://x/y"}),
         writes=(("status", "aifunctions/minimal"), ("event", "InvalidSpec")), reason="InvalidSpec",
         conditions={"SpecValid": ("False", "InvalidSpec")}, message=("SpecValid", "spec.model.repository"), events=("InvalidSpec",)),
    Case("blocked by a Knative flag: nothing applied, the status names the key to set", HANDLER,
         knative=KnativeSettings(features={**ALL_ON, "multi-container": "disabled"}, autoscaler={}),
         writes=(("status", "aifunctions/digits-lambda"),), reason="KnativeFeatureDisabled",
         conditions={"KnativeFeaturesReady": ("False", "KnativeFeatureDisabled")}, message=("KnativeFeaturesReady", "multi-container")),
    Case("a dropped schedule: its PingSource is pruned, nothing else written", HANDLER, after_first_pass=True, change=add_stale_ping_source,
         writes=(("delete", "pingsources/digits-lambda-hourly"),)),
    Case("nothing to write: a second pass over an unchanged function makes no request that writes", HANDLER, after_first_pass=True,
         writes=()),
    Case("drift in a rendered field: the Service is applied again", HANDLER, after_first_pass=True, change=drift_service_image,
         writes=(("apply", "Service/digits-lambda"),)),
    Case("ConfigMap of the handler's name held by someone else: nothing more is applied", HANDLER,
         objects=(foreign("ConfigMap", "v1", CM),),
         writes=(("status", "aifunctions/digits-lambda"),), reason="NotOwned",
         conditions={"ServiceReady": ("False", "NotOwned")}, message=("ServiceReady", f"ConfigMap {CM} already exists")),
    Case("Trigger name held by someone else: the rest is applied, TriggersReady says NotOwned", HANDLER,
         objects=(foreign("Trigger", "eventing.knative.dev/v1", UPLOADS),),
         writes=(("apply", f"ConfigMap/{CM}"), ("apply", "Service/digits-lambda"), ("apply", f"PingSource/{NIGHTLY}"),
                 ("status", "aifunctions/digits-lambda")),
         conditions={"TriggersReady": ("False", "NotOwned")}, message=("TriggersReady", f"Trigger {UPLOADS}")),
    Case("Eventing not installed: the function is served, TriggersReady says what to install", HANDLER, unserved=EVENTING,
         writes=(("apply", f"ConfigMap/{CM}"), ("apply", "Service/digits-lambda"), ("status", "aifunctions/digits-lambda")),
         conditions={"TriggersReady": ("False", "EventingNotInstalled")}, message=("TriggersReady", "install Knative Eventing")),
    Case("unresolved Trigger once the Service has an address: it is nudged", HANDLER, after_first_pass=True, change=unresolve_trigger,
         writes=(("patch", f"Trigger/{UPLOADS}"), ("status", "aifunctions/digits-lambda"))),
    Case("function deleted while a cached copy remained: nothing is written", MINIMAL, function_exists=False, gone=True),
    Case("canary: the rolled-out revision keeps 80%, the latest gets 20%", MINIMAL, after_first_pass=True, change=start_canary,
         writes=(("apply", "Service/minimal"), ("status", "aifunctions/minimal")),
         traffic=[{"revisionName": "minimal-00001", "percent": 80}, {"latestRevision": True, "percent": 20}]),
    Case("GPU fallback: the status names the product the running pod landed on", FALLBACK, objects=(GPU_NODE,), running_on=("gpu-1",),
         writes=(("apply", "Service/fallback"), ("status", "aifunctions/fallback")), status={"gpuProduct": "NVIDIA-A10G"}),
    Case("pre-warm window open: the routed revision gets min-scale 3, one raised earlier and no longer routed gets 1 back, no Service apply",
         PREWARM, after_first_pass=True, change=routed_revisions,
         writes=(("patch", "Revision/minimal-00001"), ("patch", "Revision/minimal-00002"), ("status", "aifunctions/minimal")),
         status={"prewarm": {"minReplicas": 3, "windows": [NOON], "next": TOMORROW, "problem": None}}),
    Case("pre-warm of a revision that never ran: min-scale is written and the status says Knative ignores it until a request", PREWARM,
         after_first_pass=True, change=never_run_revision,
         writes=(("patch", "Revision/minimal-00001"), ("status", "aifunctions/minimal")),
         status={"prewarm": {"minReplicas": 3, "windows": [NOON], "next": TOMORROW, "problem": (
             "Revision minimal-00001 has not run yet (created with initialReplicas 0): Knative's autoscaler has no metrics for it "
             "and ignores min-scale until its first request, which starts this window's replicas")}}),
    Case("pre-warm schedules removed: both revisions get spec.scaling.minReplicas back and status.prewarm goes", PREWARM,
         after_first_pass=True, change=window_over,
         writes=(("patch", "Revision/minimal-00001"), ("patch", "Revision/minimal-00002"), ("status", "aifunctions/minimal")),
         status={"prewarm": None}),
    Case("pre-warm without the right to patch revisions: the status says so, the rest goes on", PREWARM, after_first_pass=True,
         change=routed_revisions, failures={("patch", "Revision/minimal-00002"): ApiError(403, "revisions is forbidden")},
         writes=(("patch", "Revision/minimal-00001"), ("patch", "Revision/minimal-00002"), ("status", "aifunctions/minimal")),
         conditions={"ServiceReady": ("Unknown", "Deploying")}, message=None,
         status={"prewarm": {"minReplicas": 3, "windows": [NOON], "next": TOMORROW,
                             "problem": "Revision minimal-00002: the API server refused min-scale 3: revisions is forbidden"}}),
    Case("waiting for a GPU node: the scheduler's words and every product tried", FALLBACK, unschedulable=NO_GPU_NODE,
         writes=(("apply", "Service/fallback"), ("status", "aifunctions/fallback")), reason="WaitingForGPUNode",
         conditions={"PodsScheduled": ("False", "WaitingForGPUNode")},
         message=("PodsScheduled", NO_GPU_NODE + "; GPU products tried (nvidia.com/gpu.product): NVIDIA-L4, NVIDIA-A10G, Tesla-T4")),
]


def first_pass(case: Case) -> tuple[FakeKubeClient, Manifest]:
    """The cluster and function body before the case's pass."""
    client = FakeKubeClient(*case.objects, unserved=case.unserved)
    body = copy.deepcopy(case.function)
    if case.function_exists:
        client.put(body)
    if case.after_first_pass:
        outcome = reconcile(client, body, OperatorConfig(), case.knative, now=NOW)
        body = {**body, "status": outcome.status}
        client.actions.clear()
    if case.change:
        case.change(client, body)
    client.failures.update(case.failures)
    return client, body


@pytest.mark.parametrize("case", TABLE, ids=[c.name for c in TABLE])
def test_reconcile(case: Case) -> None:
    client, body = first_pass(case)
    if case.raises is not None:
        with pytest.raises(ApiError) as error:
            reconcile(client, body, OperatorConfig(), case.knative, cached(case, body), now=NOW)
        assert error.value.status == case.raises
        assert tuple(client.writes()) == case.writes
        return
    outcome = reconcile(client, body, OperatorConfig(), case.knative, cached(case, body), now=NOW)
    assert tuple(client.writes()) == case.writes, f"writes: {client.writes()}"
    assert outcome.gone == case.gone
    if case.gone:
        return
    check_status(case, outcome)
    assert tuple(reason for _, reason, _ in client.events) == case.events
    if case.traffic is not None:
        live = client.get(*_service_resource(), case.function["metadata"]["name"])
        assert live is not None and live["spec"]["traffic"] == case.traffic


def cached(case: Case, body: Manifest) -> Cached:
    """What the watches would have shown: nothing of the Service or children, the case's pods."""
    return Cached(reconciled_before=bool(body.get("status")), running_on=case.running_on, unschedulable=case.unschedulable)


def check_status(case: Case, outcome: Outcome) -> None:
    conditions = conditions_by_type(outcome.status)
    for key, value in case.status.items():
        assert outcome.status.get(key) == value, (key, outcome.status.get(key))
    if case.reason is not None:
        assert outcome.status["reason"] == case.reason
    for type_, (status, reason) in case.conditions.items():
        got = conditions[type_]
        assert (got["status"], got["reason"]) == (status, reason), f"{type_}: {got}"
    if case.message is not None:
        type_, text = case.message
        assert text in conditions[type_]["message"], conditions[type_]
    if not case.needs_gpu_product:
        assert outcome.status.get("gpuProduct") is None
    written = any(verb == "status" for verb, _ in case.writes)
    assert outcome.status_written == written


def test_the_watch_cache_saves_the_reads() -> None:
    """With the Service and children as the watches showed them, an unchanged function costs no request at all."""
    client, body = first_pass(Case("", HANDLER, after_first_pass=True))
    service = client.get(*_service_resource(), "digits-lambda")
    children = {(obj["kind"], obj["metadata"]["name"]): obj for (plural, _, _), obj in client.objects.items()
                if plural in {"configmaps", "pingsources", "triggers"}}
    client.actions.clear()
    outcome = reconcile(client, body, OperatorConfig(), KNATIVE, Cached(service=service, children=children, body_is_fresh=True), now=NOW)
    assert client.actions == [] and not outcome.status_written and not outcome.applied


def test_a_second_invalid_pass_posts_no_second_event() -> None:
    """The Warning is posted when the spec becomes invalid or its problems change, not on every pass."""
    case = TABLE[5]
    client, body = first_pass(case)
    outcome = reconcile(client, body, OperatorConfig(), KNATIVE, now=NOW)
    client.actions.clear()
    again = reconcile(client, {**body, "status": outcome.status}, OperatorConfig(), KNATIVE, now=NOW)
    assert again.event is None and client.writes() == []


def _service_resource() -> tuple[Any, str]:
    from aifunction_operator.controller.kube_client import KNATIVE_SERVICES  # noqa: PLC0415
    return KNATIVE_SERVICES, "apps"
