"""What `aifn deploy` shows while it follows a function to Ready (pure: no I/O, the clock passed in).

`steps` turns what was read (the AIFunction and the pods of its latest revision) into the stages of
a deployment, in order, up to the first one not done; the command prints a step whenever its line
changes. `verdict` says when to stop: Ready, or Ready=False, for the generation that was applied.
`describe_events` formats the function's last events as `kubectl describe` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..controller.status import (
    FEATURES_READY, PODS_SCHEDULED, READY, REASON_APPLY_FAILED, REASON_EVENTING_NOT_INSTALLED, REASON_FEATURE_DISABLED,
    REASON_INVALID_SPEC, REASON_NO_TRIGGERS, REASON_NOT_OWNED, REASON_UNSCHEDULABLE, REASON_WAITING_FOR_GPU, SERVICE_READY,
    SPEC_VALID, TRIGGERS_READY, condition,
)

DONE, WAITING, FAILED = "done", "waiting", "failed"
NOT_OBSERVED = "NotObserved"
# Waits, not failures, though Knative reports them as Ready=False: a node may come (a cluster autoscaler).
_WAITS = frozenset({REASON_WAITING_FOR_GPU, REASON_UNSCHEDULABLE})
# Ready=False reasons the operator decides; they hold until the spec or the cluster's settings change.
_SETTLED = frozenset({REASON_INVALID_SPEC, REASON_FEATURE_DISABLED, REASON_NOT_OWNED, REASON_APPLY_FAILED,
                      REASON_EVENTING_NOT_INSTALLED, "NotCreated"})
# Container states that are part of every start, not worth a line of their own.
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})


@dataclass(frozen=True)
class Pod:
    """What the progress display needs of one pod of the function."""

    name: str
    node: str | None
    unschedulable: str | None  # the scheduler's message while it cannot place the pod
    ready: int  # containers ready
    containers: int
    waiting: str | None  # "triton: ImagePullBackOff: ..." for a container stuck other than starting
    stuck: str | None = None  # that container's reason: "ImagePullBackOff"

    @classmethod
    def from_manifest(cls, pod: Mapping[str, Any]) -> Pod:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        scheduled = condition(status, "PodScheduled") or {}
        unschedulable = (scheduled.get("message") or "Unschedulable") if scheduled.get("reason") == "Unschedulable" else None
        statuses = status.get("containerStatuses") or []
        waiting = stuck = None
        for item in statuses:
            state = (item.get("state") or {}).get("waiting") or {}
            if state.get("reason") and state["reason"] not in _STARTING:
                stuck = str(state["reason"])
                waiting = f"{item.get('name')}: {stuck}" + (f": {state['message']}" if state.get("message") else "")
                break
        return cls(
            name=str((pod.get("metadata") or {}).get("name", "")),
            node=spec.get("nodeName"),
            unschedulable=unschedulable,
            ready=sum(1 for item in statuses if item.get("ready")),
            containers=len(spec.get("containers") or []),
            waiting=waiting,
            stuck=stuck,
        )


@dataclass(frozen=True)
class Step:
    """One stage of a deployment and how it stands."""

    key: str
    state: str  # DONE, WAITING or FAILED
    text: str


@dataclass(frozen=True)
class Verdict:
    """Where a deployment ends: Ready (ok), or a reason and message to report.

    A failure the operator decided (an invalid spec, a Knative flag off, a name taken) is `settled`:
    it lasts until the spec or the cluster changes. One Knative reports can still clear (Knative
    keeps a Revision failed while a pod that was briefly unschedulable starts); the command gives it
    a while before it believes it.
    """

    ok: bool
    reason: str
    message: str = ""
    settled: bool = True


def observed(function: Mapping[str, Any]) -> bool:
    """Whether the operator's status describes the function's current generation."""
    status = function.get("status") or {}
    return status.get("observedGeneration") is not None and status.get("observedGeneration") == (function.get("metadata") or {}).get("generation")


def steps(function: Mapping[str, Any], pods: Sequence[Pod] = ()) -> list[Step]:
    """The stages of the deployment, up to and including the first that is not done."""
    generation = (function.get("metadata") or {}).get("generation")
    if not observed(function):
        return [Step("spec", WAITING, f"waiting for the operator to observe generation {generation}")]
    status = function.get("status") or {}
    out: list[Step] = []
    for make in (_spec, _features, _revision, _pods, _model, _triggers, _ready):
        step = make(status, pods)
        if step is None:
            continue
        out.append(step)
        if step.state != DONE:
            break
    return out


def verdict(function: Mapping[str, Any] | None, pods: Sequence[Pod] = ()) -> Verdict | None:
    """Ready or failed for the current generation; None while the deployment is under way: waits for a
    node, and a Service Knative reports failed while a pod of its revision is scheduled and starting."""
    if function is None or not observed(function):
        return None
    status = function.get("status") or {}
    ready = _cond(status, READY)
    if ready.get("status") == "True":
        return Verdict(True, "Ready")
    if ready.get("status") != "False" or ready.get("reason") in _WAITS:
        return None
    reason, message = str(ready.get("reason") or "NotReady"), str(ready.get("message") or "")
    if reason in _SETTLED:
        return Verdict(False, reason, message)
    if _cond(status, SERVICE_READY).get("status") != "True" and any(p.node and not p.waiting for p in pods):
        return None
    return Verdict(False, reason, message, settled=False)


def timeout_verdict(function: Mapping[str, Any] | None, pods: Sequence[Pod] = ()) -> Verdict:
    """Why a deployment that ran out of time is not Ready: a stuck container's reason (Knative waits out its
    progress deadline before it says more than RevisionMissing), else the function's Ready reason, or the
    operator's silence."""
    if function is None:
        return Verdict(False, "NotFound", "the AIFunction no longer exists")
    if not observed(function):
        generation = (function.get("metadata") or {}).get("generation")
        return Verdict(False, NOT_OBSERVED, f"the operator has not reported on generation {generation} (is the aifn operator running and watching this namespace?)")
    stuck = next((p for p in pods if p.stuck), None)
    if stuck is not None:
        return Verdict(False, str(stuck.stuck), f"pod {stuck.name}: {stuck.waiting}")
    ready = condition(function.get("status"), READY) or {}
    return Verdict(False, str(ready.get("reason") or "NotReady"), str(ready.get("message") or ""))


def _cond(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return condition(status, type_) or {}


def _problem(cond: Mapping[str, Any]) -> str:
    return f"{cond.get('reason')}: {cond.get('message')}" if cond.get("message") else str(cond.get("reason"))


def _spec(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    cond = _cond(status, SPEC_VALID)
    if cond.get("status") == "False":
        return Step("spec", FAILED, f"spec rejected by the operator: {_problem(cond)}")
    return Step("spec", DONE, f"spec accepted (generation {status.get('observedGeneration')})")


def _features(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    cond = _cond(status, FEATURES_READY)
    if cond.get("status") == "False":
        return Step("knative", FAILED, f"Knative feature flags: {_problem(cond)}")
    if cond.get("status") != "True":
        return Step("knative", WAITING, "waiting for the Knative feature flags check")
    if cond.get("reason") == "NotChecked":
        return Step("knative", DONE, "Knative feature flags not checked (Knative's config-features ConfigMap not found)")
    return Step("knative", DONE, "Knative feature flags enabled")


def _revision(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    service = _cond(status, SERVICE_READY)
    created = (status.get("rollout") or {}).get("latestRevision") or status.get("latestReadyRevision")
    if service.get("status") == "False" and not created:
        return Step("revision", FAILED, f"Knative Service: {_problem(service)}")
    if not created:
        return Step("revision", WAITING, "waiting for Knative to create a revision")
    return Step("revision", DONE, f"revision {created} created")


def _pods(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    cond = _cond(status, PODS_SCHEDULED)
    if cond.get("status") == "False":
        wait = "waiting for a GPU node" if cond.get("reason") == REASON_WAITING_FOR_GPU else "pods cannot be scheduled"
        return Step("pods", WAITING, f"{wait}: {_problem(cond)}")
    if any(p.unschedulable for p in pods):
        first = next(p for p in pods if p.unschedulable)
        return Step("pods", WAITING, f"pod {first.name} waits for a node: {first.unschedulable}")
    placed = [p for p in pods if p.node]
    if placed:
        nodes = ", ".join(sorted({p.node for p in placed if p.node}))
        what = f"pod {placed[0].name}" if len(placed) == 1 else f"{len(placed)} pods"
        return Step("pods", DONE, f"{what} scheduled on {nodes}")
    service = _cond(status, SERVICE_READY)
    if service.get("status") == "True":
        return Step("pods", DONE, "pods scheduled")
    if service.get("status") == "False":
        return Step("pods", FAILED, f"Knative Service: {_problem(service)}")
    return Step("pods", WAITING, "waiting for pods to be scheduled")


def _model(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    """Reached once the pods stage is done: the Service is Ready, or a pod of the revision is placed."""
    if _cond(status, SERVICE_READY).get("status") == "True":
        return Step("model", DONE, f"Triton serving the model (revision {status.get('latestReadyRevision')} ready)")
    stuck = next((p for p in pods if p.waiting), None)
    if stuck is not None:
        return Step("model", WAITING, f"pod {stuck.name}: {stuck.waiting}")
    loading = next(p for p in pods if p.node)
    if loading.ready == loading.containers:
        return Step("model", WAITING, f"pod {loading.name} ready; waiting for Knative to mark the revision ready")
    return Step("model", WAITING, f"Triton loading the model (pod {loading.name}: {loading.ready}/{loading.containers} containers ready)")


def _triggers(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step | None:
    cond = _cond(status, TRIGGERS_READY)
    if cond.get("reason") == REASON_NO_TRIGGERS:
        return None
    if cond.get("status") == "True":
        return Step("triggers", DONE, "triggers ready")
    return Step("triggers", FAILED if cond.get("status") == "False" else WAITING, f"triggers: {_problem(cond)}")


def _ready(status: Mapping[str, Any], pods: Sequence[Pod]) -> Step:
    cond = _cond(status, READY)
    if cond.get("status") == "True":
        return Step("ready", DONE, f"Ready at {status.get('url') or '(no URL yet)'}")
    failed = cond.get("status") == "False" and cond.get("reason") not in _WAITS
    return Step("ready", FAILED if failed else WAITING, f"not Ready: {_problem(cond)}")


def event_time(event: Mapping[str, Any]) -> datetime | None:
    """An Event's latest time (core v1 Events fill one of these fields); None when none parses."""
    series = event.get("series") or {}
    text = (event.get("lastTimestamp") or series.get("lastObservedTime") or event.get("eventTime")
            or (event.get("metadata") or {}).get("creationTimestamp"))
    return _parse_time(text)


def related_events(events: Sequence[Mapping[str, Any]], name: str, since: str | None = None, limit: int = 10) -> list[Mapping[str, Any]]:
    """The last `limit` events about the function and the objects named after it (Service, revisions, pods),
    from `since` (the function's creationTimestamp: not those of an earlier function of that name) on."""
    start = _parse_time(since) or datetime.min.replace(tzinfo=UTC)
    timed = [(event_time(e) or start, e) for e in events
             if (n := str((e.get("involvedObject") or {}).get("name", ""))) == name or n.startswith(f"{name}-")]
    return [e for when, e in sorted(timed, key=lambda pair: pair[0]) if when >= start][-limit:]


def describe_events(events: Sequence[Mapping[str, Any]], now: datetime) -> str:
    """Events as a `kubectl describe` table (Type, Reason, Age, From, Object, Message)."""
    if not events:
        return "Events:  <none>"
    rows = [("Type", "Reason", "Age", "From", "Object", "Message"), ("----", "------", "---", "----", "------", "-------")]
    for event in events:
        involved = event.get("involvedObject") or {}
        source = (event.get("source") or {}).get("component") or event.get("reportingComponent") or ""
        count = int(event.get("count") or (event.get("series") or {}).get("count") or 1)
        when = event_time(event)
        age = (_age(when, now) if when else "<unknown>") + (f" (x{count})" if count > 1 else "")
        message = " ".join(str(event.get("message") or "").split())
        rows.append((str(event.get("type", "")), str(event.get("reason", "")), age, source,
                     f"{involved.get('kind', '')}/{involved.get('name', '')}", message))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  " + "  ".join(cell.ljust(width) for cell, width in zip(row[:5], widths)) + "  " + row[5] for row in rows]
    return "Events:\n" + "\n".join(line.rstrip() for line in lines)


def _age(when: datetime, now: datetime) -> str:
    """`kubectl`'s short age: 45s, 3m, 2h, 4d."""
    seconds = max(int((now - when).total_seconds()), 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None
