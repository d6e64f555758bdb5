"""Python twins of the CRD's CEL rules, keyed by the CEL rule text.

The schema attaches each CEL rule to an object; the validator calls the twin below with that
object. A unit test checks that every CEL rule in the schema has a twin here, and an
integration test checks that the apiserver rejects the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .durations import parse_duration
from .errors import FieldError
from .patterns import go_matches
from .schema import CROSS_FIELD_RULES, RESTRICTION_ARG_PATTERN, duration_rules

Rule = Callable[[Any, str], list[FieldError]]


def _int(node: dict[str, Any], key: str) -> int | None:
    """The integer at `key`, or None when absent or mistyped (the type check reports that)."""
    value = node.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _max_ge_min(scaling: dict[str, Any], path: str) -> list[FieldError]:
    high, low = _int(scaling, "maxReplicas"), _int(scaling, "minReplicas")
    if high is not None and low is not None and high < low:
        return [FieldError(f"{path}.maxReplicas", f"must be >= spec.scaling.minReplicas ({low})")]
    return []


def _initial_le_max(scaling: dict[str, Any], path: str) -> list[FieldError]:
    initial, high = _int(scaling, "initialReplicas"), _int(scaling, "maxReplicas")
    if initial is not None and high is not None and initial > high:
        return [FieldError(f"{path}.initialReplicas", f"must be <= spec.scaling.maxReplicas ({high})")]
    return []


def _schedules_le_max(scaling: dict[str, Any], path: str) -> list[FieldError]:
    high, schedules = _int(scaling, "maxReplicas"), scaling.get("schedules")
    if high is None or not isinstance(schedules, list):
        return []
    return [FieldError(f"{path}.schedules[{index}].minReplicas", f"must be <= spec.scaling.maxReplicas ({high})")
            for index, item in enumerate(schedules) if isinstance(item, dict) and (_int(item, "minReplicas") or 0) > high]


def _target_le_container_concurrency(scaling: dict[str, Any], path: str) -> list[FieldError]:
    limit, target = _int(scaling, "containerConcurrency"), _int(scaling, "targetConcurrency")
    if target is not None and limit and target > limit:
        return [FieldError(f"{path}.targetConcurrency", f"must be <= spec.scaling.containerConcurrency ({limit})")]
    return []


def _rps_target_needs_rps(scaling: dict[str, Any], path: str) -> list[FieldError]:
    if "targetRequestsPerSecond" in scaling and scaling.get("metric") != "rps":
        return [FieldError(f"{path}.targetRequestsPerSecond", "needs spec.scaling.metric rps")]
    return []


def _concurrency_target_needs_concurrency(scaling: dict[str, Any], path: str) -> list[FieldError]:
    if "targetConcurrency" in scaling and scaling.get("metric", "concurrency") != "concurrency":
        return [FieldError(f"{path}.targetConcurrency", "needs spec.scaling.metric concurrency")]
    return []


def _product_needs_gpus(gpu: dict[str, Any], path: str) -> list[FieldError]:
    if "product" in gpu and (_int(gpu, "count") or 0) <= 0:
        return [FieldError(f"{path}.product", "needs spec.resources.gpu.count > 0")]
    return []


def _products_need_gpus(gpu: dict[str, Any], path: str) -> list[FieldError]:
    if "products" in gpu and (_int(gpu, "count") or 0) <= 0:
        return [FieldError(f"{path}.products", "needs spec.resources.gpu.count > 0")]
    return []


def _one_product_field(gpu: dict[str, Any], path: str) -> list[FieldError]:
    if "product" in gpu and "products" in gpu:
        return [FieldError(f"{path}.products", "spec.resources.gpu.product and spec.resources.gpu.products are exclusive")]
    return []


def _no_credentials_for_pvc(model: dict[str, Any], path: str) -> list[FieldError]:
    if "credentialsSecret" in model and str(model.get("repository", "")).startswith("pvc://"):
        return [FieldError(f"{path}.credentialsSecret", "does not apply to pvc:// repositories")]
    return []


REPOSITORY_SCHEMES = ("s3", "gs", "as", "pvc", "http", "https", "hf", "hdfs", "webhdfs", "modelscope", "file")


def _known_scheme(model: dict[str, Any], path: str) -> list[FieldError]:
    repository = str(model.get("repository", ""))
    scheme, sep, rest = repository.partition("://")
    if sep and (scheme not in REPOSITORY_SCHEMES or not rest):
        return [FieldError(f"{path}.repository", f"unsupported URI {repository!r}: use one of {', '.join(s + '://' for s in REPOSITORY_SCHEMES)} or a local path")]
    return []


def _triggers_need_handler(spec: dict[str, Any], path: str) -> list[FieldError]:
    triggers = spec.get("triggers")
    if "handler" in spec or not isinstance(triggers, dict):
        return []
    return [FieldError(f"{path}.triggers.{kind}", "needs spec.handler (Triton does not read CloudEvents)") for kind in ("schedules", "events") if triggers.get(kind)]


def _handler_serves_http(spec: dict[str, Any], path: str) -> list[FieldError]:
    runtime = spec.get("runtime")
    if "handler" in spec and isinstance(runtime, dict) and runtime.get("protocol", "http") != "http":
        return [FieldError(f"{path}.runtime.protocol", "grpc cannot be combined with spec.handler (the handler serves HTTP)")]
    return []


def _no_restriction_of_refused_apis(runtime: dict[str, Any], path: str) -> list[FieldError]:
    args = runtime.get("args")
    if not isinstance(args, list):
        return []
    return [
        FieldError(f"{path}.args[{index}]", "must not restrict Triton's model-repository, shared-memory, trace or logging APIs "
                   "(aifn refuses them to every caller); restrict other groups with one --flag=<groups>:<key>=<value> argument")
        for index, arg in enumerate(args) if isinstance(arg, str) and go_matches(RESTRICTION_ARG_PATTERN, arg)
    ]


def _one_code_source(handler: dict[str, Any], path: str) -> list[FieldError]:
    if "code" in handler and "configMap" in handler:
        return [FieldError(f"{path}.configMap", "spec.handler.code and spec.handler.configMap are exclusive")]
    return []


_BY_MESSAGE: dict[str, Rule] = {
    "spec.triggers.schedules and spec.triggers.events need spec.handler (Triton does not read CloudEvents)": _triggers_need_handler,
    "spec.runtime.protocol grpc cannot be combined with spec.handler (the handler serves HTTP)": _handler_serves_http,
    "spec.handler.code and spec.handler.configMap are exclusive": _one_code_source,
    "spec.runtime.args must not restrict Triton's model-repository, shared-memory, trace or logging APIs (aifn refuses them to every caller)": _no_restriction_of_refused_apis,
    "spec.model.repository must use s3, gs, as, pvc, http, https, hf, hdfs, webhdfs, modelscope or file, or be a local path": _known_scheme,
    "spec.scaling.maxReplicas must be >= spec.scaling.minReplicas": _max_ge_min,
    "spec.scaling.initialReplicas must be <= spec.scaling.maxReplicas": _initial_le_max,
    "spec.scaling.schedules[].minReplicas must be <= spec.scaling.maxReplicas": _schedules_le_max,
    "spec.scaling.targetConcurrency must be <= spec.scaling.containerConcurrency": _target_le_container_concurrency,
    "spec.scaling.targetRequestsPerSecond needs spec.scaling.metric rps": _rps_target_needs_rps,
    "spec.scaling.targetConcurrency needs spec.scaling.metric concurrency": _concurrency_target_needs_concurrency,
    "spec.resources.gpu.product needs spec.resources.gpu.count > 0": _product_needs_gpus,
    "spec.resources.gpu.products needs spec.resources.gpu.count > 0": _products_need_gpus,
    "spec.resources.gpu.product and spec.resources.gpu.products are exclusive": _one_product_field,
    "spec.model.credentialsSecret does not apply to pvc:// repositories": _no_credentials_for_pvc,
}


def _between(bounds: tuple[int, int]) -> Rule:
    low, high = bounds

    def check(value: str, path: str) -> list[FieldError]:
        seconds = parse_duration(value)
        if seconds is not None and not low <= seconds <= high:
            return [FieldError(path, f"must be between {low}s and {high}s, got {value}")]
        return []

    return check


RULES: dict[str, Rule] = {rule: _BY_MESSAGE[message] for _path, rule, message in CROSS_FIELD_RULES}
RULES.update({rule: _between(bounds) for rule, bounds in duration_rules().items()})
