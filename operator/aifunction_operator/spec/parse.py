"""Parse a plain AIFunction dict (from YAML or the apiserver) into the typed model.

All problems are collected and raised together as InvalidSpec; nothing is partially applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..constants import API_VERSION, KIND
from .cron import Cron
from .durations import parse_duration
from .annotation_budget import annotation_budget_errors
from .errors import FieldError, InvalidSpec
from .metadata import annotation_errors, label_errors, name_errors, namespace_errors
from .model import (
    GPU,
    AIFunction,
    AIFunctionSpec,
    ConfigMapKey,
    EnvVar,
    EventFilter,
    EventTrigger,
    Handler,
    HTTPTrigger,
    Model,
    Placement,
    PrewarmSchedule,
    Resources,
    Rollout,
    Runtime,
    Scaling,
    Schedule,
    Toleration,
    Triggers,
)
from .storage_uri import classify
from .schema import spec_schema
from .validate import validate



def parse_function(obj: Any) -> AIFunction:
    """Validate and default an AIFunction object; raise InvalidSpec listing every problem."""
    if not isinstance(obj, Mapping):
        raise InvalidSpec([FieldError("<document>", f"must be an AIFunction object, got {type(obj).__name__}")])
    errors: list[FieldError] = []
    if obj.get("apiVersion", API_VERSION) != API_VERSION:
        errors.append(FieldError("apiVersion", f"must be {API_VERSION}, got {obj.get('apiVersion')!r}"))
    if obj.get("kind", KIND) != KIND:
        errors.append(FieldError("kind", f"must be {KIND}, got {obj.get('kind')!r}"))
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
        errors.append(FieldError("metadata", "must be an object"))
    name = metadata.get("name")
    errors += name_errors(name)
    errors += namespace_errors(metadata.get("namespace"))
    errors += label_errors(metadata.get("labels"))
    errors += annotation_errors(metadata.get("annotations"))
    raw_spec = obj.get("spec")
    if raw_spec is None:
        errors.append(FieldError("spec", "required field is missing"))
        raise InvalidSpec(errors)
    spec, spec_errors = validate(raw_spec, spec_schema(), "spec")
    errors += spec_errors
    if not errors:
        source = classify(spec["model"]["repository"])
        if isinstance(source, FieldError):
            errors.append(source)
        errors += _semantic_errors(spec)
    if not errors:
        errors += annotation_budget_errors(obj, spec)
    if errors:
        raise InvalidSpec(errors)
    annotations = metadata.get("annotations") or {}
    return AIFunction(
        name=name,
        namespace=str(metadata.get("namespace") or "default"),
        spec=_build_spec(spec, name),
        uid=metadata.get("uid"),
        generation=metadata.get("generation"),
        annotations={str(k): str(v) for k, v in annotations.items()},
    )


def _build_spec(spec: Mapping[str, Any], name: str) -> AIFunctionSpec:
    model = spec["model"]
    runtime = spec.get("runtime", {})
    resources = spec.get("resources", {})
    gpu = resources.get("gpu", {})
    placement = spec.get("placement", {})
    scaling = spec.get("scaling", {})
    rollout = spec.get("rollout", {})
    triggers = spec.get("triggers", {})
    http = triggers.get("http", {})
    handler = spec.get("handler")
    return AIFunctionSpec(
        model=Model(
            name=model.get("name", name),
            repository=model["repository"],
            version=model.get("version"),
            credentials_secret=model.get("credentialsSecret"),
        ),
        runtime=Runtime(
            image=runtime.get("image"),
            protocol=runtime.get("protocol", "http"),
            args=tuple(runtime.get("args", ())),
            env=tuple(EnvVar(e["name"], e.get("value"), e.get("valueFrom")) for e in runtime.get("env", ())),
        ),
        resources=Resources(
            gpu=GPU(count=gpu.get("count", 0), type=gpu.get("type", "nvidia.com/gpu"), product=gpu.get("product"),
                    products=tuple(gpu.get("products", ()))),
            cpu=resources.get("cpu"),
            memory=resources.get("memory"),
            shared_memory=resources.get("sharedMemory", "1Gi"),
        ),
        placement=Placement(
            node_selector=dict(placement.get("nodeSelector", {})),
            tolerations=tuple(
                Toleration(t.get("key"), t.get("operator"), t.get("value"), t.get("effect"), t.get("tolerationSeconds"))
                for t in placement.get("tolerations", ())
            ),
            affinity=placement.get("affinity"),
            runtime_class_name=placement.get("runtimeClassName"),
        ),
        scaling=Scaling(
            min_replicas=scaling.get("minReplicas", 0),
            max_replicas=scaling.get("maxReplicas"),
            metric=scaling.get("metric", "concurrency"),
            target_concurrency=scaling.get("targetConcurrency"),
            target_requests_per_second=scaling.get("targetRequestsPerSecond"),
            container_concurrency=scaling.get("containerConcurrency"),
            initial_replicas=scaling.get("initialReplicas"),
            scale_down_delay=_seconds(scaling.get("scaleDownDelay")),
            scale_to_zero_retention=_seconds(scaling.get("scaleToZeroRetention")),
            startup_timeout=parse_duration(scaling.get("startupTimeout", "15m")) or 900,
            schedules=tuple(
                PrewarmSchedule(s["name"], s["cron"], parse_duration(s["duration"]) or 0, s["minReplicas"], s.get("timezone"),
                                parse_duration(s.get("leadTime", "5m")) or 0)
                for s in scaling.get("schedules", ())
            ),
        ),
        handler=None if handler is None else Handler(
            entrypoint=handler["entrypoint"],
            code=handler.get("code"),
            config_map=ConfigMapKey(**handler["configMap"]) if "configMap" in handler else None,
            image=handler.get("image"),
            cpu=handler.get("cpu"),
            memory=handler.get("memory"),
        ),
        triggers=Triggers(
            http=HTTPTrigger(visibility=http.get("visibility", "external")),
            schedules=tuple(
                Schedule(s["name"], s["cron"], s.get("timezone"), s.get("data"), s.get("contentType", "application/json"))
                for s in triggers.get("schedules", ())
            ),
            events=tuple(
                EventTrigger(e["name"], e.get("broker", "default"), EventFilter(dict(e.get("filter", {}).get("attributes", {}))))
                for e in triggers.get("events", ())
            ),
        ),
        timeout_seconds=spec.get("timeoutSeconds"),
        rollout=Rollout(canary_traffic_percent=rollout.get("canaryTrafficPercent"), tags=bool(rollout.get("tags", False))),
    )


def _semantic_errors(spec: Mapping[str, Any]) -> list[FieldError]:
    """Rules that span sections of the spec, and cron expressions read as Knative's PingSource reads them."""
    errors = _cron_errors(spec.get("triggers", {}).get("schedules", ()), "spec.triggers.schedules")
    errors += _cron_errors(spec.get("scaling", {}).get("schedules", ()), "spec.scaling.schedules")
    product = spec.get("resources", {}).get("gpu", {}).get("product")
    selected = spec.get("placement", {}).get("nodeSelector", {}).get("nvidia.com/gpu.product")
    if product and selected and product != selected:
        errors.append(FieldError("spec.placement.nodeSelector.nvidia.com/gpu.product", f"conflicts with spec.resources.gpu.product ({product!r})"))
    if selected and spec.get("resources", {}).get("gpu", {}).get("products"):
        errors.append(FieldError("spec.placement.nodeSelector.nvidia.com/gpu.product",
                                 "conflicts with spec.resources.gpu.products (a node selector allows one product; list them in products)"))
    return errors


def _cron_errors(schedules: Any, path: str) -> list[FieldError]:
    """A FieldError for each schedule whose cron expression or timezone PingSource's parser (spec.cron) would refuse."""
    errors = []
    for index, schedule in enumerate(schedules if isinstance(schedules, list) else ()):
        if not isinstance(schedule, Mapping) or not isinstance(schedule.get("cron"), str):
            continue
        timezone = schedule.get("timezone") if isinstance(schedule.get("timezone"), str) else None
        try:
            Cron.parse(schedule["cron"], timezone)
        except ValueError as exc:
            field = "timezone" if str(exc).startswith("timezone") else "cron"
            errors.append(FieldError(f"{path}[{index}].{field}", str(exc)))
    return errors


def _seconds(value: str | None) -> int | None:
    return None if value is None else parse_duration(value)
