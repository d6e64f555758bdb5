"""Parsing, defaulting and every validation rule of the spec model, as tables."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from aifunction_operator.spec import InvalidSpec, SourceKind, classify, parse_function
from aifunction_operator.spec.model import RepositorySource


def doc(spec: dict[str, Any], name: str = "fn", **top: Any) -> dict[str, Any]:
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": name}, "spec": spec, **top}


MODEL = {"repository": "s3://bucket/repo"}
WINDOW = {"name": "morning", "cron": "0 8 * * MON-FRI", "timezone": "Europe/Berlin", "duration": "1h", "minReplicas": 3}


def test_defaults() -> None:
    fn = parse_function(doc({"model": MODEL}, name="digits"))
    spec = fn.spec
    assert fn.namespace == "default"
    assert spec.model.name == "digits"  # defaults to metadata.name
    assert spec.runtime.protocol == "http" and spec.runtime.image is None
    assert spec.resources.gpu.count == 0 and spec.resources.gpu.type == "nvidia.com/gpu"
    assert spec.resources.shared_memory == "1Gi"
    assert spec.scaling.min_replicas == 0 and spec.scaling.max_replicas is None
    assert spec.scaling.metric == "concurrency"
    assert spec.scaling.startup_timeout == 900
    assert spec.triggers.http.visibility == "external"


def test_full_parse() -> None:
    fn = parse_function(yaml.safe_load("""
apiVersion: aifn.dev/v1alpha1
kind: AIFunction
metadata: {name: full, namespace: ml, uid: u1, generation: 3, annotations: {a: b}}
spec:
  model: {name: m.v2, repository: "pvc://claim/sub/dir", version: 2}
  runtime: {image: img, protocol: grpc, args: [--x], env: [{name: A, value: "1"}]}
  resources: {gpu: {count: 2, type: amd.com/gpu, product: MI300X}, cpu: 500m, memory: 8Gi, sharedMemory: 2Gi}
  placement: {nodeSelector: {zone: a}, tolerations: [{key: k, operator: Exists}], runtimeClassName: nvidia}
  scaling: {minReplicas: 1, maxReplicas: 4, targetConcurrency: 2, containerConcurrency: 4, initialReplicas: 2, scaleDownDelay: 1m30s, scaleToZeroRetention: 1h, startupTimeout: 45m}
  triggers: {http: {visibility: cluster-local}}
  timeoutSeconds: 30
"""))
    s = fn.spec
    assert (fn.namespace, fn.uid, fn.generation, fn.annotations) == ("ml", "u1", 3, {"a": "b"})
    assert (s.model.name, s.model.version) == ("m.v2", 2)
    assert s.runtime.args == ("--x",) and s.runtime.env[0].name == "A"
    assert (s.resources.gpu.count, s.resources.gpu.type, s.resources.gpu.product) == (2, "amd.com/gpu", "MI300X")
    assert s.placement.tolerations[0].key == "k" and s.placement.runtime_class_name == "nvidia"
    assert (s.scaling.scale_down_delay, s.scaling.scale_to_zero_retention, s.scaling.startup_timeout) == (90, 3600, 2700)
    assert s.timeout_seconds == 30


def test_handler_and_triggers_parse() -> None:
    fn = parse_function(doc({
        "model": MODEL,
        "handler": {"entrypoint": "pkg.mod:Transformer", "configMap": {"name": "cm", "key": "k.py"}},
        "triggers": {"schedules": [{"name": "n", "cron": "*/5 * * * *"}], "events": [{"name": "e", "filter": {"attributes": {"type": "t"}}}]},
    }))
    handler = fn.spec.handler
    assert handler is not None and handler.module == "pkg.mod" and handler.config_map is not None and handler.config_map.key == "k.py"
    assert fn.spec.triggers.schedules[0].content_type == "application/json"
    assert fn.spec.triggers.events[0].broker == "default" and fn.spec.triggers.events[0].filter.attributes == {"type": "t"}


def test_integer_quantities_are_accepted_as_strings() -> None:
    assert parse_function(doc({"model": MODEL, "resources": {"cpu": 2}})).spec.resources.cpu == "2"
    handler = parse_function(doc({"model": MODEL, "handler": {"entrypoint": "m:f", "cpu": 1, "memory": "512Mi"}})).spec.handler
    assert handler is not None and (handler.cpu, handler.memory) == ("1", "512Mi")


# (spec or whole-document override, expected path, expected message fragment)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("crossed replicas", {"spec": {"model": MODEL, "scaling": {"minReplicas": 3, "maxReplicas": 1}}}, "spec.scaling.maxReplicas", "must be >= spec.scaling.minReplicas (3)"),
    ("negative min", {"spec": {"model": MODEL, "scaling": {"minReplicas": -1}}}, "spec.scaling.minReplicas", "must be >= 0, got -1"),
    ("zero max", {"spec": {"model": MODEL, "scaling": {"maxReplicas": 0}}}, "spec.scaling.maxReplicas", "must be >= 1"),
    ("initial above max", {"spec": {"model": MODEL, "scaling": {"initialReplicas": 5, "maxReplicas": 2}}}, "spec.scaling.initialReplicas", "must be <= spec.scaling.maxReplicas (2)"),
    ("target above cc", {"spec": {"model": MODEL, "scaling": {"targetConcurrency": 9, "containerConcurrency": 4}}}, "spec.scaling.targetConcurrency", "must be <= spec.scaling.containerConcurrency (4)"),
    ("rps target without rps", {"spec": {"model": MODEL, "scaling": {"targetRequestsPerSecond": 9}}}, "spec.scaling.targetRequestsPerSecond", "needs spec.scaling.metric rps"),
    ("concurrency target with rps", {"spec": {"model": MODEL, "scaling": {"metric": "rps", "targetConcurrency": 9}}}, "spec.scaling.targetConcurrency", "needs spec.scaling.metric concurrency"),
    ("unknown metric", {"spec": {"model": MODEL, "scaling": {"metric": "cpu"}}}, "spec.scaling.metric", "must be one of concurrency, rps"),
    ("bad duration", {"spec": {"model": MODEL, "scaling": {"scaleDownDelay": "5 minutes"}}}, "spec.scaling.scaleDownDelay", "must be a duration"),
    ("delay over an hour", {"spec": {"model": MODEL, "scaling": {"scaleDownDelay": "61m"}}}, "spec.scaling.scaleDownDelay", "must be between 0s and 3600s"),
    ("zero startup", {"spec": {"model": MODEL, "scaling": {"startupTimeout": "0s"}}}, "spec.scaling.startupTimeout", "must be between 1s and 86400s"),
    ("cc over limit", {"spec": {"model": MODEL, "scaling": {"containerConcurrency": 1001}}}, "spec.scaling.containerConcurrency", "must be <= 1000"),
    ("product without gpus", {"spec": {"model": MODEL, "resources": {"gpu": {"product": "A100"}}}}, "spec.resources.gpu.product", "needs spec.resources.gpu.count > 0"),
    ("negative gpus", {"spec": {"model": MODEL, "resources": {"gpu": {"count": -2}}}}, "spec.resources.gpu.count", "must be >= 0"),
    ("bad gpu type", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "type": "GPU!"}}}}, "spec.resources.gpu.type", "must be a string matching"),
    ("bad quantity", {"spec": {"model": MODEL, "resources": {"memory": "lots"}}}, "spec.resources.memory", "must be a Kubernetes quantity"),
    ("quantity wrong type", {"spec": {"model": MODEL, "resources": {"cpu": [1]}}}, "spec.resources.cpu", "must be an integer or a string, got a list"),
    ("ftp scheme", {"spec": {"model": {"repository": "ftp://host/repo"}}}, "spec.model.repository", "unsupported URI 'ftp://host/repo'"),
    ("missing repository", {"spec": {"model": {"name": "x"}}}, "spec.model.repository", "required field is missing"),
    ("missing model", {"spec": {}}, "spec.model", "required field is missing"),
    ("missing spec", {"spec": None}, "spec", "required field is missing"),
    ("bad pvc claim", {"spec": {"model": {"repository": "pvc://Bad_Claim/x"}}}, "spec.model.repository", "claim name that is a DNS subdomain"),
    ("relative file uri", {"spec": {"model": {"repository": "file://models"}}}, "spec.model.repository", "absolute path inside the image"),
    ("credentials with pvc", {"spec": {"model": {"repository": "pvc://c/x", "credentialsSecret": "s"}}}, "spec.model.credentialsSecret", "does not apply to pvc://"),
    ("bad model name", {"spec": {"model": {"repository": "s3://a/b", "name": "a b"}}}, "spec.model.name", "must be a Triton model name"),
    ("version zero", {"spec": {"model": {"repository": "s3://a/b", "version": 0}}}, "spec.model.version", "must be >= 1"),
    ("misspelt field", {"spec": {"model": MODEL, "scalling": {}}}, "spec.scalling", "unknown field (did you mean 'scaling'?)"),
    ("unknown nested field", {"spec": {"model": {**MODEL, "nmae": "x"}}}, "spec.model.nmae", "unknown field (did you mean 'name'?)"),
    # Found by the CLI fuzz test: a key of newlines split the message over lines naming no field.
    ("unknown field named by newlines", {"spec": {"model": MODEL, "\n\n": None}}, 'spec["\\n\\n"]', "unknown field"),
    ("unknown empty field", {"spec": {"model": MODEL, "": 1}}, 'spec[""]', "unknown field"),
    ("bad protocol", {"spec": {"model": MODEL, "runtime": {"protocol": "websocket"}}}, "spec.runtime.protocol", "must be one of http, grpc"),
    ("args not a list", {"spec": {"model": MODEL, "runtime": {"args": "--x"}}}, "spec.runtime.args", "must be a list, got a string"),
    ("args re-restricting the repository API", {"spec": {"model": MODEL, "runtime": {"args": ["--log-verbose=1", "--http-restricted-api=model-repository:k=v"]}}}, "spec.runtime.args[1]", "must not restrict Triton's model-repository"),
    ("args re-restricting shared memory over gRPC", {"spec": {"model": MODEL, "runtime": {"args": ["--grpc-restricted-protocol=inference,shared-memory:k=v"]}}}, "spec.runtime.args[0]", "must not restrict"),
    ("restriction flag without its value", {"spec": {"model": MODEL, "runtime": {"args": ["--http-restricted-api", "inference:k=v"]}}}, "spec.runtime.args[0]", "one --flag=<groups>:<key>=<value> argument"),
    ("env without name", {"spec": {"model": MODEL, "runtime": {"env": [{"value": "1"}]}}}, "spec.runtime.env[0].name", "required field is missing"),
    ("bad env name", {"spec": {"model": MODEL, "runtime": {"env": [{"name": "1 A"}]}}}, "spec.runtime.env[0].name", "environment variable name"),
    ("bad visibility", {"spec": {"model": MODEL, "triggers": {"http": {"visibility": "public"}}}}, "spec.triggers.http.visibility", "must be one of external, cluster-local"),
    ("bad toleration operator", {"spec": {"model": MODEL, "placement": {"tolerations": [{"operator": "In"}]}}}, "spec.placement.tolerations[0].operator", "must be one of Exists, Equal"),
    ("node selector not strings", {"spec": {"model": MODEL, "placement": {"nodeSelector": {"a": 1}}}}, "spec.placement.nodeSelector.a", "must be a string, got an integer"),
    ("conflicting product", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "product": "A"}}, "placement": {"nodeSelector": {"nvidia.com/gpu.product": "B"}}}}, "spec.placement.nodeSelector.nvidia.com/gpu.product", "conflicts with spec.resources.gpu.product"),
    ("timeout zero", {"spec": {"model": MODEL, "timeoutSeconds": 0}}, "spec.timeoutSeconds", "must be >= 1"),
    ("products without GPUs", {"spec": {"model": MODEL, "resources": {"gpu": {"products": ["A"]}}}}, "spec.resources.gpu.products", "needs spec.resources.gpu.count > 0"),
    ("product and products", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "product": "A", "products": ["B"]}}}}, "spec.resources.gpu.products", "are exclusive"),
    ("duplicate product", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "products": ["A", "B", "A"]}}}}, "spec.resources.gpu.products[2]", "duplicate value 'A'"),
    ("empty products", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "products": []}}}}, "spec.resources.gpu.products", "at least 1 items"),
    ("too many products", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "products": [f"P{i}" for i in range(9)]}}}}, "spec.resources.gpu.products", "at most 8 items"),
    ("product not a label value", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "products": ["A100 80GB"]}}}}, "spec.resources.gpu.products[0]", "must be a string matching"),
    ("products and a product node selector", {"spec": {"model": MODEL, "resources": {"gpu": {"count": 1, "products": ["A"]}}, "placement": {"nodeSelector": {"nvidia.com/gpu.product": "A"}}}}, "spec.placement.nodeSelector.nvidia.com/gpu.product", "conflicts with spec.resources.gpu.products"),
    ("boolean as integer", {"spec": {"model": MODEL, "scaling": {"minReplicas": True}}}, "spec.scaling.minReplicas", "must be an integer, got a boolean"),
    ("null field", {"spec": {"model": MODEL, "scaling": None}}, "spec.scaling", "must not be null"),
    ("schedule without handler", {"spec": {"model": MODEL, "triggers": {"schedules": [{"name": "n", "cron": "@daily"}]}}}, "spec.triggers.schedules", "needs spec.handler"),
    ("event without handler", {"spec": {"model": MODEL, "triggers": {"events": [{"name": "e"}]}}}, "spec.triggers.events", "needs spec.handler"),
    ("grpc with handler", {"spec": {"model": MODEL, "runtime": {"protocol": "grpc"}, "handler": {"entrypoint": "m:f", "code": "x"}}}, "spec.runtime.protocol", "grpc cannot be combined with spec.handler"),
    ("code and configMap", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f", "code": "x", "configMap": {"name": "a", "key": "b"}}}}, "spec.handler.configMap", "are exclusive"),
    ("bad entrypoint", {"spec": {"model": MODEL, "handler": {"entrypoint": "handler.py"}}}, "spec.handler.entrypoint", "must be a string matching"),
    ("handler without entrypoint", {"spec": {"model": MODEL, "handler": {"code": "x"}}}, "spec.handler.entrypoint", "required field is missing"),
    ("handler cpu not a quantity", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f", "cpu": "lots"}}}, "spec.handler.cpu", "must be a Kubernetes quantity"),
    ("bad cron", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f"}, "triggers": {"schedules": [{"name": "n", "cron": "daily"}]}}}, "spec.triggers.schedules[0].cron", "must be a string matching"),
    ("duplicate schedule", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f"}, "triggers": {"schedules": [{"name": "n", "cron": "@daily"}, {"name": "n", "cron": "@hourly"}]}}}, "spec.triggers.schedules[1]", "duplicate name 'n'"),
    ("trigger cron minute out of range", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f"}, "triggers": {"schedules": [{"name": "n", "cron": "61 * * * *"}]}}}, "spec.triggers.schedules[0].cron", "minute field '61': 61 is outside 0-59"),
    ("pre-warm cron Sunday as 7", {"spec": {"model": MODEL, "scaling": {"schedules": [{**WINDOW, "cron": "0 8 * * 7"}]}}}, "spec.scaling.schedules[0].cron", "PingSource refuses 7"),
    ("pre-warm unknown timezone", {"spec": {"model": MODEL, "scaling": {"schedules": [{**WINDOW, "timezone": "Mars/Olympus"}]}}}, "spec.scaling.schedules[0].timezone", "not a known IANA timezone"),
    ("pre-warm above maxReplicas", {"spec": {"model": MODEL, "scaling": {"maxReplicas": 2, "schedules": [WINDOW]}}}, "spec.scaling.schedules[0].minReplicas", "must be <= spec.scaling.maxReplicas (2)"),
    ("pre-warm window under a minute", {"spec": {"model": MODEL, "scaling": {"schedules": [{**WINDOW, "duration": "30s"}]}}}, "spec.scaling.schedules[0].duration", "must be between 60s and 86400s"),
    ("pre-warm lead over an hour", {"spec": {"model": MODEL, "scaling": {"schedules": [{**WINDOW, "leadTime": "2h"}]}}}, "spec.scaling.schedules[0].leadTime", "must be between 0s and 3600s"),
    ("pre-warm zero replicas", {"spec": {"model": MODEL, "scaling": {"schedules": [{**WINDOW, "minReplicas": 0}]}}}, "spec.scaling.schedules[0].minReplicas", "must be >= 1"),
    ("pre-warm without duration", {"spec": {"model": MODEL, "scaling": {"schedules": [{"name": "w", "cron": "@daily", "minReplicas": 1}]}}}, "spec.scaling.schedules[0].duration", "required field is missing"),
    ("duplicate pre-warm schedule", {"spec": {"model": MODEL, "scaling": {"schedules": [WINDOW, WINDOW]}}}, "spec.scaling.schedules[1]", "duplicate name 'morning'"),
    # Found by the spec fuzz test in a CI run: the apiserver refuses the rendered Service's duplicate env keys.
    ("duplicate env name", {"spec": {"model": MODEL, "runtime": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}}, "spec.runtime.env[1]", "duplicate name 'A'"),
    ("event filter not strings", {"spec": {"model": MODEL, "handler": {"entrypoint": "m:f"}, "triggers": {"events": [{"name": "e", "filter": {"attributes": {"type": 1}}}]}}}, "spec.triggers.events[0].filter.attributes.type", "must be a string"),
    ("upper-case name", {"metadata": {"name": "Digits"}}, "metadata.name", "must be a DNS-1035 label"),
    ("name too long", {"metadata": {"name": "a" * 58}}, "metadata.name", "at most 57 characters"),
    ("missing name", {"metadata": {}}, "metadata.name", "required field is missing"),
    ("wrong kind", {"kind": "Service"}, "kind", "must be AIFunction"),
    ("wrong api version", {"apiVersion": "aifn.dev/v1"}, "apiVersion", "must be aifn.dev/v1alpha1"),
]


@pytest.mark.parametrize(("case", "override", "path", "fragment"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid(case: str, override: dict[str, Any], path: str, fragment: str) -> None:
    obj = {**doc({"model": MODEL}), **override}
    with pytest.raises(InvalidSpec) as err:
        parse_function(obj)
    messages = {e.path: e.message for e in err.value.errors}
    assert path in messages, f"{case}: expected an error at {path}, got {err.value}"
    assert fragment in messages[path], f"{case}: {messages[path]!r} lacks {fragment!r}"


def test_all_errors_are_reported_at_once() -> None:
    obj = doc({"model": {"repository": "ftp://x", "nmae": 1}, "scaling": {"minReplicas": 3, "maxReplicas": 1, "scaleDownDelay": "2h"}, "resources": {"cpu": "lots"}}, name="Bad")
    with pytest.raises(InvalidSpec) as err:
        parse_function(obj)
    paths = [e.path for e in err.value.errors]
    assert paths == sorted(paths)
    assert set(paths) == {"metadata.name", "spec.model.nmae", "spec.model.repository", "spec.scaling.maxReplicas", "spec.scaling.scaleDownDelay", "spec.resources.cpu"}
    assert str(err.value).count(";") == len(paths) - 1


@pytest.mark.parametrize("obj", [None, [], "text", 3])
def test_non_objects_are_rejected_cleanly(obj: Any) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_function(obj)
    assert err.value.errors[0].path == "<document>"


CLASSIFY = [
    ("s3://b/p", RepositorySource(SourceKind.DIRECT, "s3://b/p")),
    ("gs://b/p", RepositorySource(SourceKind.DIRECT, "gs://b/p")),
    ("as://acct/container/p", RepositorySource(SourceKind.DIRECT, "as://acct/container/p")),
    ("pvc://claim", RepositorySource(SourceKind.PVC, "pvc://claim", claim="claim", sub_path="")),
    ("pvc://claim/a/b/", RepositorySource(SourceKind.PVC, "pvc://claim/a/b/", claim="claim", sub_path="a/b")),
    ("https://h/x.tgz", RepositorySource(SourceKind.INITIALIZER, "https://h/x.tgz")),
    ("hf://org/model", RepositorySource(SourceKind.INITIALIZER, "hf://org/model")),
    ("file:///models", RepositorySource(SourceKind.IMAGE, "file:///models", path="/models")),
    ("../model_repo", RepositorySource(SourceKind.LOCAL, "../model_repo", path="../model_repo")),
]


@pytest.mark.parametrize(("uri", "expected"), CLASSIFY, ids=[c[0] for c in CLASSIFY])
def test_classify(uri: str, expected: RepositorySource) -> None:
    assert classify(uri) == expected


def test_pvc_parent_directory_is_rejected() -> None:
    error = classify("pvc://claim/../etc")
    assert not isinstance(error, RepositorySource) and "'..'" in error.message


def test_args_may_restrict_other_triton_apis() -> None:
    args = ("--http-restricted-api=inference,statistics:authorization=Bearer s3cret", "--grpc-restricted-protocol=inference:k=v")
    assert parse_function(doc({"model": MODEL, "runtime": {"args": list(args)}})).spec.runtime.args == args
