"""kopf wiring, and nothing else: which events call which `OperatorState` method.

- AIFunction create / spec update / resume -> reconcile (transient API errors back off;
  an invalid spec is reported in status and by an Event, then left alone).
- AIFunction events -> keep the newest body (and forget deleted ones).
- Knative Services we manage -> reconcile their owner: drift is re-applied, a deleted
  Service recreated, Knative's status mirrored.
- ConfigMaps, PingSources and Triggers we manage -> reconcile their owner, as for Services.
  Without Knative Eventing's CRDs kopf leaves those watches unserved (a warning) and the
  operator runs on: functions without triggers do not need Eventing.
- The CRDs of PingSource and Trigger becoming Established or going away (Eventing installed
  or removed) -> re-check every function, so TriggersReady follows within seconds, not at
  the next periodic resync.
- Pods of our functions -> reconcile when a pod starts or stops waiting for a node.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from .kube_client import ApiError
from ..constants import GROUP, LABEL_FUNCTION, LABEL_MANAGED_BY, MANAGED_BY, PLURAL, VERSION
from .state import Key, OperatorState
from .status import REASON_NOT_OWNED, SERVICE_READY, TRIGGERS_READY, condition

# The function's children other than the Service: handler-code ConfigMaps, PingSources, Triggers.
CHILD_WATCHES = (("", "v1", "configmaps"), ("sources.knative.dev", "v1", "pingsources"), ("eventing.knative.dev", "v1", "triggers"))
log = logging.getLogger("aifn.operator")
EVENTING_CRDS = frozenset(f"{plural}.{group}" for group, _, plural in CHILD_WATCHES[1:])
MAX_BACKOFF = 60.0
NOT_OWNED_RETRY = 15.0


def configure(settings: kopf.OperatorSettings) -> None:
    """kopf's bookkeeping in `aifn.dev/` annotations, none in status; server-side watch filters."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.watching.label_selectors["serving.knative.dev", "v1", "services"] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    for group, version, plural in CHILD_WATCHES:
        settings.watching.label_selectors[group, version, plural] = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
    settings.watching.label_selectors["", "v1", "pods"] = LABEL_FUNCTION
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.batching.worker_limit = 256


def register(registry: kopf.OperatorRegistry, state: OperatorState) -> None:
    """Add the operator's handlers to `registry`."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, field="spec", registry=registry)
    async def reconcile_function(body: kopf.Body, retry: int, **_: Any) -> None:
        await _reconcile(state, (body.metadata.namespace or "", body.metadata.name or ""), dict(body), retry)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def cache_function(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        key = (body.metadata.namespace or "", body.metadata.name or "")
        if event["type"] == "DELETED":
            state.forget(key)
        else:
            state.remember(dict(body))

    # Filtered server-side by the label selector in configure(); no client-side filter, so that a
    # Service stripped of our label (which leaves the selection as a DELETED event) is restored too.
    @kopf.on.event("serving.knative.dev", "v1", "services", registry=registry)
    async def service_changed(event: kopf.RawEvent, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        owner = _owner(body)
        if owner is None or owner not in state.functions:
            return
        state.observe_service(owner, None if event["type"] == "DELETED" else dict(body))
        try:
            await state.reconcile(owner)
        except ApiError as exc:  # event handlers are not retried: the periodic resync catches up
            logger.warning("reconciling %s/%s after a Service event failed: %s", *owner, exc)

    # Filtered server-side by label (configure()), like Services; a child stripped of our label is restored.
    @kopf.on.event(*CHILD_WATCHES[0], registry=registry)
    @kopf.on.event(*CHILD_WATCHES[1], registry=registry)
    @kopf.on.event(*CHILD_WATCHES[2], registry=registry)
    async def child_changed(event: kopf.RawEvent, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        owner = _owner(body)
        if owner is None or owner not in state.functions:
            return
        state.observe_child(owner, (str(body.get("kind")), body.metadata.name or ""), None if event["type"] == "DELETED" else dict(body))
        try:
            await state.reconcile(owner)
        except ApiError as exc:
            logger.warning("reconciling %s/%s after a %s event failed: %s", *owner, body.get("kind"), exc)

    @kopf.on.event("", "v1", "pods", labels={LABEL_FUNCTION: kopf.PRESENT}, registry=registry)
    async def pod_changed(event: kopf.RawEvent, body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        key = (body.metadata.namespace or "", str(body.metadata.labels.get(LABEL_FUNCTION, "")))
        pod = None if event["type"] == "DELETED" else dict(body)
        if state.track_pod(key, body.metadata.name or "", pod) and key in state.functions:
            try:
                await state.reconcile(key)
            except ApiError as exc:
                logger.warning("reconciling %s/%s after a pod event failed: %s", *key, exc)


    crd_states: dict[str, str] = {}

    @kopf.on.event("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                   when=lambda name, **_: name in EVENTING_CRDS, registry=registry)
    async def eventing_crd_changed(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
        name = body.metadata.name or ""
        now = crd_state(event["type"], dict(body))
        previous = crd_states.get(name)
        crd_states[name] = now
        if previous is None and event["type"] is None:
            return  # the initial listing: the functions' own reconciles see the API as it is
        if now != previous and now != "pending":  # pending: not served yet, nothing to act on
            log.info("Knative Eventing's CRD %s is %s: re-checking every function", name, now)
            await state.reconcile_all()


def crd_state(event_type: str | None, crd: dict[str, Any]) -> str:
    """`established`, `terminating`, `gone` or `pending` for a CRD watch event."""
    if event_type == "DELETED":
        return "gone"
    if crd.get("metadata", {}).get("deletionTimestamp"):
        return "terminating"
    conditions = crd.get("status", {}).get("conditions") or []
    established = any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
    return "established" if established else "pending"


async def _reconcile(state: OperatorState, key: Key, body: dict[str, Any], retry: int) -> None:
    try:
        outcome = await state.reconcile(key, body)
    except ApiError as exc:
        if exc.transient:
            raise kopf.TemporaryError(str(exc), delay=min(MAX_BACKOFF, 2.0 ** min(retry, 6))) from None
        raise kopf.PermanentError(str(exc)) from None
    if outcome is not None and any((condition(outcome.status, type_) or {}).get("reason") == REASON_NOT_OWNED for type_ in (SERVICE_READY, TRIGGERS_READY)):
        # Someone else's object holds a name; its removal is not an event we watch, so look again later.
        raise kopf.TemporaryError("a name the function needs is taken by an object it does not control", delay=NOT_OWNED_RETRY)


def _owner(body: kopf.Body) -> Key | None:
    """The AIFunction that controls a Knative Service (by its controller reference, else its label)."""
    for ref in body.metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("apiVersion", "").startswith(GROUP + "/"):
            return (body.metadata.namespace or "", ref["name"])
    name = body.metadata.labels.get(LABEL_FUNCTION)
    return (body.metadata.namespace or "", str(name)) if name else None
