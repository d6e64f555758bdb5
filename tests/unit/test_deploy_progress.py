"""`aifn deploy`'s progress display (commands/progress.py): statuses the operator writes (build_status)
and pods as the API returns them -> the stages shown, when to stop, and the events table."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aifunction_operator.commands.progress import (
    DONE, FAILED, WAITING, Pod, describe_events, related_events, steps, timeout_verdict, verdict,
)
from aifunction_operator.controller.status import Findings, build_status

T0 = "2026-01-01T00:00:00Z"
URL = "http://fn.ns.example.com"


def ksvc(ready: str | None = "True", reason: str | None = None, message: str | None = None, observed: bool = True,
         created: str | None = "fn-00001", ready_revision: str | None = "fn-00001") -> dict[str, Any]:
    """A Knative Service as its controller reports it."""
    status: dict[str, Any] = {"url": URL, "latestCreatedRevisionName": created, "latestReadyRevisionName": ready_revision}
    if observed:
        status["observedGeneration"] = 1
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, **({"reason": reason} if reason else {}),
                                 **({"message": message} if message else {})}]
    return {"metadata": {"generation": 1}, "status": {k: v for k, v in status.items() if v is not None}}


def function(obs: Findings | None, generation: int = 1) -> dict[str, Any]:
    """An AIFunction at `generation` with the status the operator writes for `obs` (None: not observed yet)."""
    fn: dict[str, Any] = {"metadata": {"name": "fn", "generation": generation, "creationTimestamp": T0}}
    if obs is not None:
        fn["status"] = build_status(obs, None, T0)
    return fn


def pod(ready: int = 0, node: str | None = "worker", waiting: tuple[str, str] | None = None, unschedulable: str | None = None) -> Pod:
    return Pod("fn-00001-deployment-abc", node, unschedulable, ready, 2, f"triton: {waiting[0]}: {waiting[1]}" if waiting else None,
               waiting[0] if waiting else None)


GPU_WAIT = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
LOADING = "Triton loading the model (pod fn-00001-deployment-abc: 1/2 containers ready)"

# (what the operator reported, pods) -> the last stage shown, its state and text, and the verdict's (ok, reason, settled)
CASES = [
    pytest.param(None, (), ("spec", WAITING, "waiting for the operator to observe generation 1"), None, id="not-observed"),
    pytest.param(Findings(1, spec_errors=("spec.model.repository: bad",)), (),
                 ("spec", FAILED, "spec rejected by the operator: InvalidSpec: spec.model.repository: bad"), (False, "InvalidSpec", True), id="invalid"),
    pytest.param(Findings(1, blockers=("needs kubernetes.podspec-tolerations",)), (),
                 ("knative", FAILED, "Knative feature flags: KnativeFeatureDisabled: needs kubernetes.podspec-tolerations"),
                 (False, "KnativeFeatureDisabled", True), id="feature-disabled"),
    pytest.param(Findings(1, service=None), (), ("revision", WAITING, "waiting for Knative to create a revision"), None, id="service-missing"),
    pytest.param(Findings(1, service=ksvc(ready=None, observed=False, created=None, ready_revision=None)), (),
                 ("revision", WAITING, "waiting for Knative to create a revision"), None, id="knative-not-observed"),
    pytest.param(Findings(1, not_owned="Service fn belongs to someone else"), (),
                 ("revision", FAILED, "Knative Service: NotOwned: Service fn belongs to someone else"), (False, "NotOwned", True), id="not-owned"),
    pytest.param(Findings(1, service=ksvc("Unknown", "RevisionMissing", ready_revision=None)), (),
                 ("pods", WAITING, "waiting for pods to be scheduled"), None, id="no-pods-yet"),
    pytest.param(Findings(1, service=ksvc("False", "RevisionFailed", ready_revision=None), unschedulable=GPU_WAIT, needs_gpu=True,
                          acceptable_products=("NVIDIA-B200",)), (pod(node=None, unschedulable=GPU_WAIT),),
                 ("pods", WAITING, f"waiting for a GPU node: WaitingForGPUNode: {GPU_WAIT}; GPU products tried (nvidia.com/gpu.product): NVIDIA-B200"),
                 None, id="gpu-wait-is-not-a-failure"),
    pytest.param(Findings(1, service=ksvc("Unknown", "RevisionMissing", ready_revision=None), unschedulable="0/2 nodes: Insufficient cpu"), (),
                 ("pods", WAITING, "pods cannot be scheduled: Unschedulable: 0/2 nodes: Insufficient cpu"), None, id="cpu-unschedulable"),
    pytest.param(Findings(1, service=ksvc("Unknown", "RevisionMissing", ready_revision=None)), (pod(ready=1),),
                 ("model", WAITING, LOADING), None, id="loading"),
    pytest.param(Findings(1, service=ksvc("Unknown", "RevisionMissing", ready_revision=None)), (pod(ready=2),),
                 ("model", WAITING, "pod fn-00001-deployment-abc ready; waiting for Knative to mark the revision ready"), None, id="pod-ready"),
    pytest.param(Findings(1, service=ksvc("Unknown", "RevisionMissing", ready_revision=None)), (pod(waiting=("ImagePullBackOff", "no such image")),),
                 ("model", WAITING, "pod fn-00001-deployment-abc: triton: ImagePullBackOff: no such image"), None, id="image-pull"),
    pytest.param(Findings(1, service=ksvc("False", "RevisionFailed", "Container triton exited: 1", ready_revision=None)), (),
                 ("pods", FAILED, "Knative Service: RevisionFailed: Container triton exited: 1"), (False, "RevisionFailed", False), id="revision-failed"),
    pytest.param(Findings(1, service=ksvc("False", "RevisionMissing", "no ready Revision", ready_revision=None)), (pod(ready=1),),
                 ("model", WAITING, LOADING), None, id="knative-failed-while-a-pod-starts"),
    pytest.param(Findings(1, service=ksvc("False", "RevisionFailed", ready_revision=None)), (pod(waiting=("CrashLoopBackOff", "back-off 20s")),),
                 ("model", WAITING, "pod fn-00001-deployment-abc: triton: CrashLoopBackOff: back-off 20s"), (False, "RevisionFailed", False), id="crash-loop"),
    pytest.param(Findings(1, service=ksvc(), triggers=(("PingSource fn-nightly", None),)), (),
                 ("triggers", WAITING, "triggers: EventingNotReady: PingSource fn-nightly is being created"), None, id="triggers-pending"),
    pytest.param(Findings(1, service=ksvc()), (), ("ready", DONE, f"Ready at {URL}"), (True, "Ready", True), id="ready-scaled-to-zero"),
    pytest.param(Findings(1, service=ksvc()), (pod(ready=2),), ("ready", DONE, f"Ready at {URL}"), (True, "Ready", True), id="ready"),
]


@pytest.mark.parametrize(("obs", "pods", "last", "expected"), CASES)
def test_stages_and_verdict(obs: Findings | None, pods: tuple[Pod, ...], last: tuple[str, str, str], expected: tuple[bool, str, bool] | None) -> None:
    fn = function(obs)
    shown = steps(fn, pods)
    assert (shown[-1].key, shown[-1].state, shown[-1].text) == last
    assert all(step.state == DONE for step in shown[:-1]), "stages stop at the first one not done"
    result = verdict(fn, pods)
    assert (None if result is None else (result.ok, result.reason, result.settled)) == expected


def test_a_ready_function_shows_every_stage_in_order() -> None:
    shown = steps(function(Findings(1, service=ksvc())), [pod(ready=2)])
    assert [(s.key, s.text) for s in shown] == [
        ("spec", "spec accepted (generation 1)"),
        ("knative", "Knative feature flags enabled"),
        ("revision", "revision fn-00001 created"),
        ("pods", "pod fn-00001-deployment-abc scheduled on worker"),
        ("model", "Triton serving the model (revision fn-00001 ready)"),
        ("ready", f"Ready at {URL}"),
    ]


def test_a_status_of_an_earlier_generation_is_not_believed() -> None:
    fn = function(Findings(1, service=ksvc()), generation=2)  # Ready, but for generation 1
    assert [(s.key, s.state) for s in steps(fn)] == [("spec", WAITING)]
    assert verdict(fn) is None
    assert timeout_verdict(fn).reason == "NotObserved" and "generation 2" in timeout_verdict(fn).message


@pytest.mark.parametrize(
    ("fn", "pods", "reason", "message"),
    [
        (None, (), "NotFound", "the AIFunction no longer exists"),
        (function(Findings(1, service=ksvc("False", "RevisionFailed"), unschedulable=GPU_WAIT, needs_gpu=True)), (), "WaitingForGPUNode", GPU_WAIT),
        (function(Findings(1, service=ksvc("Unknown", "RevisionMissing", "waiting"))), (pod(ready=1),), "RevisionMissing", "waiting"),
        (function(Findings(1, service=ksvc("Unknown", "RevisionMissing", "waiting"))), (pod(waiting=("ImagePullBackOff", "no such host")),),
         "ImagePullBackOff", "pod fn-00001-deployment-abc: triton: ImagePullBackOff: no such host"),
    ],
)
def test_timeout_names_the_reason(fn: dict[str, Any] | None, pods: tuple[Pod, ...], reason: str, message: str) -> None:
    result = timeout_verdict(fn, pods)
    assert (result.ok, result.reason, result.message) == (False, reason, message)


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        ({"metadata": {"name": "p"}, "spec": {"containers": [{}, {}]}, "status": {"phase": "Pending"}}, Pod("p", None, None, 0, 2, None)),
        ({"metadata": {"name": "p"}, "spec": {"containers": [{}]},
          "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes"}]}},
         Pod("p", None, "0/2 nodes", 0, 1, None)),
        ({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [{}, {}]},
          "status": {"containerStatuses": [{"name": "queue-proxy", "ready": True, "state": {"running": {}}},
                                           {"name": "triton", "ready": False, "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
         Pod("p", "n", None, 1, 2, None)),
        ({"metadata": {"name": "p"}, "spec": {"nodeName": "n", "containers": [{}]},
          "status": {"containerStatuses": [{"name": "triton", "ready": False,
                                            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}}}]}},
         Pod("p", "n", None, 0, 1, "triton: CrashLoopBackOff: back-off 10s", "CrashLoopBackOff")),
    ],
)
def test_pod_from_manifest(manifest: dict[str, Any], expected: Pod) -> None:
    assert Pod.from_manifest(manifest) == expected


def event(name: str, reason: str, at: str, kind: str = "Pod", count: int = 1, message: str = "m") -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name}, "type": "Warning", "reason": reason, "lastTimestamp": at,
            "count": count, "message": message, "source": {"component": "default-scheduler"}}


def test_related_events_are_the_functions_and_its_childrens_latest() -> None:
    events = [
        event("fn-00001-deployment-abc", "FailedScheduling", "2026-01-01T00:00:30Z"),
        event("fn", "InvalidSpec", "2026-01-01T00:00:10Z", kind="AIFunction"),
        event("fnx", "Other", "2026-01-01T00:00:20Z"),  # another function's
        event("fn", "Old", "2025-12-31T23:00:00Z"),  # an earlier function of the same name
        {**event("fn", "Recorded", ""), "lastTimestamp": None, "eventTime": "2026-01-01T00:00:20.500000Z"},
    ]
    assert [e["reason"] for e in related_events(events, "fn", since=T0)] == ["InvalidSpec", "Recorded", "FailedScheduling"]
    assert [e["reason"] for e in related_events(events, "fn", since=T0, limit=1)] == ["FailedScheduling"]


def test_events_table_as_kubectl_describe() -> None:
    now = datetime(2026, 1, 1, 0, 2, 0, tzinfo=UTC)
    table = describe_events([event("fn-00001-deployment-abc", "FailedScheduling", "2026-01-01T00:01:15Z", count=3,
                                   message="0/2 nodes are\n available")], now)
    assert table.splitlines() == [
        "Events:",
        "  Type     Reason            Age       From               Object                       Message",
        "  ----     ------            ---       ----               ------                       -------",
        "  Warning  FailedScheduling  45s (x3)  default-scheduler  Pod/fn-00001-deployment-abc  0/2 nodes are available",
    ]
    assert describe_events([], now) == "Events:  <none>"
