"""Hypothesis strategies for AIFunction documents, built from the spec schema itself.

`functions(valid=True)` draws documents that the schema and its cross-field rules should
accept (the property tests still check the Python verdict, they do not assume it);
`functions(valid=False)` also draws values just past each bound: integers one beyond the
minimum or maximum, strings one character too long or with a trailing newline, wrong types,
unknown fields, enum values that are not in the enum, crossed replica bounds, restricted
Triton arguments. `yaml_documents()` draws anything a user could feed `aifn validate`: broken
YAML, arbitrary JSON-like trees, mutated functions.

Generated strings stay in printable ASCII plus a few characters where Python and Go's RE2
disagree (`\\n`, `\\x85`, `\\u2028`, `\\u00a0`), so the checks of `spec.patterns` are exercised.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml
from hypothesis import strategies as st

from aifunction_operator.spec.schema import (
    CRON_PATTERN,
    DURATION_PATTERN,
    ENTRYPOINT_PATTERN,
    QUANTITY_PATTERN,
    spec_schema,
)

ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
TRICKY = st.sampled_from(["\n", "\x85", "\u2028", "\u00a0", "\t", "é", ":", "#", "{", "'", '"', "*", "&", "!", "|"])
SMALL_TEXT = st.text(st.one_of(ASCII, TRICKY), max_size=12)

REMOTE_REPOSITORIES = st.sampled_from([
    "s3://bucket/models", "gs://b/r", "as://acct/c/p", "pvc://models", "pvc://models/sub/dir", "https://example.com/m.tar.gz",
    "http://h/m", "hf://org/model", "hdfs://nn/p", "webhdfs://nn/p", "modelscope://org/m", "file:///models",
])
ODD_REPOSITORIES = st.sampled_from([
    "./models", "models", "/abs/models", "ftp://x/y", "s3://", "pvc://Bad_Claim/x", "pvc://c/../x", "file://relative",
    "S3://b/r", "s3:/b", "://x", "s3://b/r\n", "gs://b\u2028r", "", "x" * 2049,
])
TRITON_ARGS = st.sampled_from([
    "--log-verbose=1", "--strict-readiness=true", "--http-restricted-api=model-repository:k=v", "--http-restricted-api",
    "--grpc-restricted-protocol=health:k=v", "--grpc-restricted-protocol=shared-memory,health:k=v",
    "--http-restricted-api=metadata:a=b", "--http-restricted-api=logging:a=b\n", "--grpc-restricted-protocol",
])


def _regex(pattern: str) -> str:
    """A Python pattern that fullmatches exactly the texts RE2 matches with `pattern` (no newline tricks)."""
    return pattern.replace(r"\S", "[!-~]").replace(r"\s", "[ \t]")


def _pattern_text(pattern: str, max_length: int) -> st.SearchStrategy[str]:
    return st.from_regex(_regex(pattern), fullmatch=True, alphabet=ASCII).filter(lambda s: len(s) <= max_length)


def _durations(low: int, high: int) -> st.SearchStrategy[str]:
    def spell(seconds: int) -> str:
        hours, rest = divmod(seconds, 3600)
        minutes, secs = divmod(rest, 60)
        text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
        return text or "0s"

    return st.one_of(st.integers(low, high).map(spell), st.sampled_from([spell(low), spell(high)]),
                     st.integers(low, min(high, 5000)).map(lambda s: f"{s}s")).filter(lambda s: len(s) >= 2)


def _duration_bounds(schema: dict[str, Any]) -> tuple[int, int] | None:
    for validation in schema.get("x-kubernetes-validations", ()):
        found = re.findall(r"duration\('(\d+)s'\)", validation["rule"])
        if validation["rule"].startswith("duration(self)") and len(found) == 2:
            return int(found[0]), int(found[1])
    return None


def _wrong_type(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    options: list[Any] = [True, [], {}, "8", 1.5, 2.0, -1]
    if kind == "string":
        options = [5, True, [], {}, 1.5]
    elif kind == "integer":
        options = ["8", True, 1.5, 2.0, [], {}]
    elif kind == "object":
        options = ["x", 1, [], True]
    elif kind == "array":
        options = ["x", 1, {}, True]
    elif kind == "boolean":
        options = ["true", 1, "yes"]
    return st.sampled_from(options)


class _Builder:
    def __init__(self, valid: bool) -> None:
        self.valid = valid

    def node(self, schema: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
        good = self._good(schema, path)
        if self.valid:
            return good
        bad = st.one_of(self._bad(schema, path), _wrong_type(schema))
        # Mostly good values: most bad documents then have one or two faults, as a user's would.
        return st.one_of(good, good, good, good, bad)

    def _good(self, schema: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
        special = self._special(schema, path)
        if special is not None:
            return special
        if schema.get("x-kubernetes-int-or-string"):
            return st.one_of(st.integers(0, 10**6), _pattern_text(QUANTITY_PATTERN, 12))
        kind = schema.get("type")
        if kind == "object":
            return self._object(schema, path)
        if kind == "array":
            items = self.node(schema["items"], path + "[]")
            keys = schema.get("x-kubernetes-list-map-keys")
            unique = (lambda item: tuple(repr(item.get(k)) if isinstance(item, dict) else repr(item) for k in keys)) if keys and self.valid else None
            if schema.get("x-kubernetes-list-type") == "set" and self.valid:
                unique = repr
            min_size = schema.get("minItems", 0) if self.valid else 0
            return st.lists(items, min_size=min_size, max_size=max(3, min_size), unique_by=unique) if unique else st.lists(items, min_size=min_size, max_size=max(3, min_size))
        if kind == "integer":
            low, high = schema.get("minimum", -5), schema.get("maximum", 10**6)
            return st.one_of(st.integers(low, high), st.sampled_from(sorted({low, high, min(low + 1, high)})))
        if kind == "boolean":
            return st.booleans()
        if kind == "string":
            if "enum" in schema:
                return st.sampled_from(schema["enum"])
            bounds = _duration_bounds(schema)
            if bounds:
                return _durations(*bounds)
            max_length = min(schema.get("maxLength", 40), 40)
            if "pattern" in schema:
                return _pattern_text(schema["pattern"], schema.get("maxLength", 10**6))
            text = st.text(ASCII, min_size=schema.get("minLength", 0), max_size=max_length)
            return text
        return st.none()

    def _special(self, schema: dict[str, Any], path: str) -> st.SearchStrategy[Any] | None:
        if path == "spec.model.repository":
            return REMOTE_REPOSITORIES if self.valid else st.one_of(REMOTE_REPOSITORIES, ODD_REPOSITORIES)
        if path == "spec.runtime.args[]":
            return st.sampled_from(["--log-verbose=1", "--strict-readiness=true", "--grpc-restricted-protocol=health:k=v"]) if self.valid else TRITON_ARGS
        if path == "spec.handler.code":
            return st.sampled_from(["def handle(event, context):\n    return {}\n", "x = 1\n", ""])
        if path == "spec.handler.entrypoint":
            return st.sampled_from(["handler:handle", "pkg.mod:Fn", "h:lambda_handler"]) | _pattern_text(ENTRYPOINT_PATTERN, 256)
        if path in ("spec.triggers.schedules[].cron", "spec.scaling.schedules[].cron"):
            # Valid draws hold cron expressions PingSource accepts (the parser checks their fields, the CRD only their shape).
            valid_cron = st.sampled_from(["@hourly", "*/5 * * * *", "0 0 * * 1", "@daily", "30 7 * * MON-FRI", "0 8-18/2 1,15 * *"])
            return valid_cron if self.valid else valid_cron | _pattern_text(CRON_PATTERN, 128)
        if path in ("spec.triggers.schedules[].timezone", "spec.scaling.schedules[].timezone"):
            return st.sampled_from(["UTC", "Europe/Paris", "America/New_York"])
        if path == "spec.placement.affinity":
            return st.sampled_from([
                {}, {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}]}}},
                {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
            ])
        if path in ("spec.placement.nodeSelector", "spec.triggers.events[].filter.attributes"):
            keys = st.sampled_from(["pool", "type", "source", "kubernetes.io/arch", "nvidia.com/gpu.product"])
            return st.dictionaries(keys, self.node(schema["additionalProperties"], path + ".*"), max_size=3)
        if path == "spec.placement.tolerations[].key":
            return st.sampled_from(["", "nvidia.com/gpu", "dedicated"])
        if path == "spec.placement.tolerations[].value":
            return st.sampled_from(["", "gpu", "true"])
        if path == "spec.placement.tolerations[]" and self.valid:
            # Kubernetes' own rules (Exists has no value; tolerationSeconds only with NoExecute) are
            # Knative's to check, not the CRD's: valid documents keep to them.
            return st.one_of(
                st.fixed_dictionaries({"key": st.just("nvidia.com/gpu"), "operator": st.just("Exists"),
                                       "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule"])}),
                st.fixed_dictionaries({"key": st.just("dedicated"), "operator": st.just("Equal"),
                                       "value": st.just("gpu")}, optional={"effect": st.just("NoSchedule")}),
                st.fixed_dictionaries({"key": st.just("k"), "operator": st.just("Exists"), "effect": st.just("NoExecute"),
                                       "tolerationSeconds": st.integers(0, 3600)}),
            )
        if path == "spec.runtime.env[]" and self.valid:
            name = _pattern_text(r"^[A-Za-z_][A-Za-z0-9_]*$", 40)
            ref = st.fixed_dictionaries({"name": st.sampled_from(["cm", "secret-a"]), "key": st.sampled_from(["k", "token"])},
                                        optional={"optional": st.booleans()})
            return st.one_of(
                st.fixed_dictionaries({"name": name}, optional={"value": st.text(ASCII, max_size=20)}),
                st.fixed_dictionaries({"name": name, "valueFrom": st.one_of(
                    st.fixed_dictionaries({"secretKeyRef": ref}), st.fixed_dictionaries({"configMapKeyRef": ref}))}),
            )
        if path == "spec.runtime.image" or path == "spec.handler.image":
            return st.sampled_from(["nvcr.io/nvidia/tritonserver:26.08-py3", "registry.local/triton:dev", "img@sha256:" + "a" * 64])
        if path == "spec.resources.gpu.type":
            return st.sampled_from(["nvidia.com/gpu", "amd.com/gpu", "nvidia.com/mig-1g.5gb"])
        if path == "spec.resources.gpu.product":
            return st.sampled_from(["NVIDIA-L4", "NVIDIA-A100-SXM4-80GB", "Tesla-T4"])
        if path in ("spec.triggers.events[].broker", "spec.handler.configMap.name", "spec.runtime.env[].valueFrom.secretKeyRef.name"):
            return st.sampled_from(["default", "my-broker", "cm-1"])
        if path == "spec.triggers.schedules[].contentType":
            return st.sampled_from(["application/json", "text/plain"])
        if self.valid and schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
            # Free text in a valid document: printable ASCII (Knative and Kubernetes check many of
            # these further, e.g. a ConfigMap key or an image reference).
            return st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=max(1, schema.get("minLength", 0)), max_size=12).filter(lambda s: s[0].isalnum() and s[-1].isalnum())
        return None

    def _object(self, schema: dict[str, Any], path: str) -> st.SearchStrategy[dict[str, Any]]:
        properties = schema.get("properties", {})
        if not properties:
            if "additionalProperties" in schema:
                return st.dictionaries(st.text(ASCII, min_size=1, max_size=10), self.node(schema["additionalProperties"], path + ".*"), max_size=3)
            return st.just({})
        required = {k: self.node(properties[k], f"{path}.{k}") for k in schema.get("required", ())}
        optional = {k: self.node(v, f"{path}.{k}") for k, v in properties.items() if k not in required}
        return st.fixed_dictionaries(required, optional=optional)

    def _bad(self, schema: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
        """Values just outside what `schema` allows, of the right type."""
        options: list[st.SearchStrategy[Any]] = []
        kind = schema.get("type")
        if kind == "integer":
            if "minimum" in schema:
                options.append(st.just(schema["minimum"] - 1))
            if "maximum" in schema:
                options.append(st.just(schema["maximum"] + 1))
            options.append(st.sampled_from([2**31, 2**63 - 1, -(2**31)]))
        elif kind == "string" or schema.get("x-kubernetes-int-or-string"):
            if "enum" in schema:
                options.append(st.sampled_from([v.upper() for v in schema["enum"]] + [schema["enum"][0] + "\n", ""]))
            if "maxLength" in schema and schema["maxLength"] <= 4096:
                options.append(st.just("a" * (schema["maxLength"] + 1)))
            if "pattern" in schema or _duration_bounds(schema):
                options.append(self._good(schema, path).map(lambda s: str(s) + "\n"))
                options.append(st.sampled_from(["", "-", "1.5s", "-1s", "0s", "25h", "1h1s", "UPPER", "a b", "é", "9" * 16 + "h"]))
            options.append(SMALL_TEXT)
        elif kind == "object":
            good = self._object(schema, path)
            options.append(good.map(lambda d: {**d, "nmae": "x"}))
            required = schema.get("required", ())
            if required:
                options.append(good.map(lambda d: {k: v for k, v in d.items() if k != required[0]}))
        elif kind == "array":
            options.append(st.lists(self.node(schema["items"], path + "[]"), min_size=2, max_size=3))
        return st.one_of(options) if options else _wrong_type(schema)


NAMES = _pattern_text(r"^[a-z]([-a-z0-9]{0,55}[a-z0-9])?$", 57)
BAD_NAMES = st.sampled_from(["f" * 58, "Bad_Name", "x\n", "-a", "a-", "1abc", "", "é", "a.b"])


@st.composite
def _cross_field_valid(draw: st.DrawFn, spec: dict[str, Any]) -> dict[str, Any]:
    """Mend the cross-field rules in a drawn spec, so that a 'valid' draw usually is."""
    spec = copy.deepcopy(spec)
    scaling = spec.get("scaling")
    if isinstance(scaling, dict):
        low = scaling.get("minReplicas", 0)
        if "maxReplicas" in scaling:
            scaling["maxReplicas"] = max(scaling["maxReplicas"], low, 1)
            if "initialReplicas" in scaling:
                scaling["initialReplicas"] = min(scaling["initialReplicas"], scaling["maxReplicas"])
        if scaling.get("initialReplicas") == 0:
            scaling["initialReplicas"] = 1 if scaling.get("maxReplicas", 1) >= 1 else 0
        metric = scaling.get("metric", "concurrency")
        if metric == "rps":
            scaling.pop("targetConcurrency", None)
        else:
            scaling.pop("targetRequestsPerSecond", None)
        if scaling.get("containerConcurrency") and "targetConcurrency" in scaling:
            scaling["targetConcurrency"] = min(scaling["targetConcurrency"], scaling["containerConcurrency"])
        if "maxReplicas" in scaling:
            for schedule in scaling.get("schedules", ()):
                schedule["minReplicas"] = min(schedule["minReplicas"], scaling["maxReplicas"])
    gpu = spec.get("resources", {}).get("gpu")
    if isinstance(gpu, dict) and "product" in gpu and "products" in gpu:
        del gpu["product"]
    if isinstance(gpu, dict) and ("product" in gpu or "products" in gpu) and not gpu.get("count"):
        gpu["count"] = draw(st.integers(1, 4))
    selector = spec.get("placement", {}).get("nodeSelector")
    if isinstance(selector, dict) and "nvidia.com/gpu.product" in selector:
        if isinstance(gpu, dict) and "products" in gpu:
            del selector["nvidia.com/gpu.product"]
        elif isinstance(gpu, dict) and "product" in gpu:
            selector["nvidia.com/gpu.product"] = gpu["product"]
    model = spec["model"]
    if "credentialsSecret" in model and model["repository"].startswith("pvc://"):
        del model["credentialsSecret"]
    handler = spec.get("handler")
    if handler is not None:
        if "code" in handler and "configMap" in handler:
            del handler["configMap"]
        spec.setdefault("runtime", {})["protocol"] = "http"
    else:
        triggers = spec.get("triggers")
        if isinstance(triggers, dict):
            triggers.pop("schedules", None)
            triggers.pop("events", None)
    return spec


def functions(valid: bool = True, mend: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """AIFunction documents (as dicts) drawn from the schema; see the module docstring.

    `valid=True, mend=False`: every field within its own bounds, the cross-field rules left to chance.
    """
    spec = _Builder(valid).node(spec_schema(), "spec")
    if valid and mend:
        spec = spec.flatmap(_cross_field_valid)
    name = NAMES if valid else st.one_of(NAMES, NAMES, NAMES, BAD_NAMES)
    return st.fixed_dictionaries({
        "apiVersion": st.just("aifn.dev/v1alpha1"),
        "kind": st.just("AIFunction"),
        "metadata": st.fixed_dictionaries({"name": name}),
        "spec": spec,
    })


JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), SMALL_TEXT)
JSON_TREES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(SMALL_TEXT, inner, max_size=4)), max_leaves=20)
YAML_TOKENS = st.one_of(ASCII, TRICKY, st.sampled_from(["\n", "\n  ", "- ", ": ", "&a ", "*a", "!!binary ", "!!python/object ", "%YAML 1.1\n", "---\n", "...\n", "<<: "]))
YAML_NOISE = st.lists(YAML_TOKENS, max_size=30).map("".join)


@st.composite
def _mutated_function(draw: st.DrawFn) -> str:
    """A function (valid or not) with one node replaced by an arbitrary value, or its text cut or spliced."""
    doc = draw(functions(valid=False))
    paths: list[list[Any]] = []

    def walk(node: Any, path: list[Any]) -> None:
        paths.append(path)
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*path, key])
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, [*path, index])

    walk(doc, [])
    path = draw(st.sampled_from(paths[1:]))
    replacement = draw(JSON_TREES)
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = replacement
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    how = draw(st.sampled_from(["whole", "cut", "splice", "two"]))
    if how == "cut":
        return text[: draw(st.integers(0, len(text)))]
    if how == "splice":
        at = draw(st.integers(0, len(text)))
        return text[:at] + draw(st.lists(YAML_TOKENS, max_size=8).map("".join)) + text[at:]
    if how == "two":
        return text + "---\n" + yaml.safe_dump(draw(functions(valid=False)))
    return text


def yaml_documents() -> st.SearchStrategy[str]:
    """Any text a user could give `aifn validate -f`: YAML noise, JSON-like trees, mutated functions."""
    return st.one_of(
        YAML_NOISE,
        JSON_TREES.map(lambda tree: yaml.safe_dump(tree, allow_unicode=True)),
        JSON_TREES.map(lambda tree: yaml.safe_dump({"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": "fn"}, "spec": tree})),
        _mutated_function(),
        functions(valid=False).map(lambda doc: yaml.safe_dump(doc, allow_unicode=True)),
    )
