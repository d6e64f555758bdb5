"""Golden and property tests for the Knative Service renderer.

Golden files live in tests/unit/golden/<name>.yaml, one per function in examples/ and
tests/unit/cases/. Regenerate them after an intended change with:

    UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_render.py

and review the diff like code. A run with UPDATE_GOLDEN fails for every file it rewrote, naming it
(as pytest-regressions does when it regenerates), so it never reports success for a comparison it
did not make; run again without it to see them pass.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from aifunction_operator.commands.render import dump_yaml_stream
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render import render
from aifunction_operator.controller.preflight import required_flags
from aifunction_operator.render.metadata import child_name
from aifunction_operator.render.service import product_weights, with_gpu_products
from aifunction_operator.spec import InvalidSpec, parse_function

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
GOLDEN = HERE / "golden"
INPUTS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((HERE / "cases").glob("*.yaml"))
CONFIG = OperatorConfig()


def load(path: Path) -> Any:
    return parse_function(yaml.safe_load(path.read_text()))


def render_path(path: Path) -> list[dict[str, Any]]:
    return render(load(path), CONFIG)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_golden(path: Path) -> None:
    rendered = dump_yaml_stream(render_path(path))
    golden = GOLDEN / f"{path.stem}.yaml"
    if os.environ.get("UPDATE_GOLDEN") and (not golden.exists() or golden.read_text() != rendered):
        golden.write_text(rendered)
        pytest.fail(f"UPDATE_GOLDEN: rewrote {golden.relative_to(ROOT)}; review its diff, then run again without "
                    "UPDATE_GOLDEN", pytrace=False)
    assert golden.exists(), f"missing golden file {golden.relative_to(ROOT)}; run with UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(), f"{path.name} no longer renders as {golden.relative_to(ROOT)}"


def test_every_golden_file_has_an_input() -> None:
    """A golden file whose input was renamed or removed is compared with nothing (other tiers still apply it)."""
    orphans = sorted(g.name for g in GOLDEN.glob("*.yaml") if g.stem not in {p.stem for p in INPUTS})
    assert not orphans, f"golden files without an input in examples/ or tests/unit/cases/: {orphans}"


# Renders every input in a fresh interpreter and prints {path: YAML stream} as JSON, as test_golden renders.
RENDER_ALL = """
import json, sys
from pathlib import Path
import yaml
from aifunction_operator.commands.render import dump_yaml_stream
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render import render
from aifunction_operator.spec import parse_function
json.dump({p: dump_yaml_stream(render(parse_function(yaml.safe_load(Path(p).read_text())), OperatorConfig()))
           for p in sys.argv[1:]}, sys.stdout)
"""
HASH_SEEDS = ("1", "2")  # two different string hash orders, so set and dict-of-set iteration show up


@pytest.fixture(scope="module")
def fresh_renders() -> dict[str, dict[str, str]]:
    """For each hash seed, every input rendered by a fresh interpreter: {seed: {path: YAML stream}}."""
    renders = {}
    for seed in HASH_SEEDS:
        result = subprocess.run([sys.executable, "-c", RENDER_ALL, *map(str, INPUTS)], capture_output=True, text=True,
                                timeout=120, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr[-3000:]
        renders[seed] = json.loads(result.stdout)
    return renders


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.stem)
def test_render_is_deterministic(path: Path, fresh_renders: dict[str, dict[str, str]]) -> None:
    """The same bytes here and in fresh interpreters with other hash seeds (one process could only agree with itself)."""
    here = dump_yaml_stream(render_path(path))
    for seed, renders in fresh_renders.items():
        assert renders[str(path)] == here, f"{path.name} renders differently with PYTHONHASHSEED={seed}"


def service(doc: str) -> dict[str, Any]:
    return render(parse_function(yaml.safe_load(doc)), CONFIG)[0]


def base(spec: str, name: str = "fn") -> str:
    return f"apiVersion: aifn.dev/v1alpha1\nkind: AIFunction\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def container(svc: dict[str, Any]) -> dict[str, Any]:
    return svc["spec"]["template"]["spec"]["containers"][0]


def pod(svc: dict[str, Any]) -> dict[str, Any]:
    return svc["spec"]["template"]["spec"]


GPU_SPEC = base("""
  model: {repository: "s3://m/r", credentialsSecret: creds}
  resources: {gpu: {count: 2, product: NVIDIA-H100-80GB-HBM3}, cpu: "8", memory: 32Gi, sharedMemory: 4Gi}
  scaling: {minReplicas: 0, maxReplicas: 5, targetConcurrency: 3, containerConcurrency: 6, initialReplicas: 1, scaleDownDelay: 2m, scaleToZeroRetention: 5m, startupTimeout: 25m}
  timeoutSeconds: 900
""")


def test_gpu_limits_selector_and_default_toleration() -> None:
    svc = service(GPU_SPEC)
    assert container(svc)["resources"] == {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "32Gi", "nvidia.com/gpu": "2"}}
    assert pod(svc)["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod(svc)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_product_weights_prefer_earlier_products() -> None:
    for count in range(1, 9):
        weights = product_weights(count)
        assert weights[0] == 100 and all(1 <= w <= 100 for w in weights)
        assert weights == sorted(weights, reverse=True) and len(set(weights)) == count, weights


ZONE = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
PRODUCTS_IN = {"key": "nvidia.com/gpu.product", "operator": "In", "values": ["L4", "T4"]}
PREFERRED = [{"weight": 100, "preference": {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["L4"]}]}},
             {"weight": 50, "preference": {"matchExpressions": [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["T4"]}]}}]
USER_PREFERRED = {"weight": 7, "preference": {"matchExpressions": [ZONE]}}
ANTI = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": {"topologyKey": "h"}}]}}
AFFINITY_MERGES = [
    ("no affinity of the user's", None, {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [PRODUCTS_IN]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": PREFERRED}}),
    ("each required term of the user's is narrowed (terms are ORed)",
     {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [ZONE]}, {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}]}]}}},
     {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
         {"matchExpressions": [ZONE, PRODUCTS_IN]},
         {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n"]}], "matchExpressions": [PRODUCTS_IN]}]},
         "preferredDuringSchedulingIgnoredDuringExecution": PREFERRED}}),
    ("the user's preferences come first, pod anti-affinity is kept",
     {**ANTI, "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [USER_PREFERRED]}},
     {**ANTI, "nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [USER_PREFERRED, *PREFERRED],
                               "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [PRODUCTS_IN]}]}}}),
]


@pytest.mark.parametrize(("case", "affinity", "expected"), AFFINITY_MERGES, ids=[c[0] for c in AFFINITY_MERGES])
def test_gpu_products_merge_into_node_affinity(case: str, affinity: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    before = copy.deepcopy(affinity)
    assert with_gpu_products(affinity, ("L4", "T4")) == expected
    assert affinity == before, "the spec's own affinity is not modified"
    assert with_gpu_products(affinity, ()) == affinity


def test_gpu_products_need_the_affinity_flag() -> None:
    svc = service(base("""
  model: {repository: "s3://m/r"}
  resources: {gpu: {count: 1, products: [L4, T4]}}
"""))
    assert "nodeSelector" not in pod(svc)
    assert pod(svc)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [{"matchExpressions": [PRODUCTS_IN]}]
    assert "kubernetes.podspec-affinity" in {r.flag.key for r in required_flags(svc)}


def test_no_gpu_means_no_gpu_toleration_or_limit() -> None:
    svc = service(base("  model: {repository: 's3://m/r'}"))
    assert "tolerations" not in pod(svc)
    assert "nodeSelector" not in pod(svc)
    assert "nvidia.com/gpu" not in container(svc).get("resources", {}).get("limits", {})


def test_user_toleration_for_gpu_replaces_default() -> None:
    svc = service(base("""
  model: {repository: "s3://m/r"}
  resources: {gpu: {count: 1}}
  placement: {tolerations: [{key: nvidia.com/gpu, operator: Equal, value: a100, effect: NoSchedule}]}
"""))
    assert pod(svc)["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "a100", "effect": "NoSchedule"}]


def test_triton_arguments_and_single_port() -> None:
    svc = service(GPU_SPEC)
    c = container(svc)
    assert c["command"] == ["tritonserver"]
    assert "--model-repository=s3://m/r" in c["args"]
    assert "--model-control-mode=explicit" in c["args"]
    assert "--load-model=fn" in c["args"]
    assert "--strict-readiness=true" in c["args"]
    assert "--exit-on-error=true" in c["args"]
    ports = [p for ctr in pod(svc)["containers"] for p in ctr.get("ports", [])]
    assert ports == [{"name": "http1", "containerPort": 8000}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready"}}


def test_grpc_protocol_routes_h2c_with_grpc_probe() -> None:
    svc = service(base("  model: {repository: 's3://m/r'}\n  runtime: {protocol: grpc}"))
    assert container(svc)["ports"] == [{"name": "h2c", "containerPort": 8001}]
    assert container(svc)["readinessProbe"] == {"grpc": {"port": 8001}}


def test_autoscaling_annotations_only_on_template() -> None:
    svc = service(GPU_SPEC)
    assert not any(k.startswith("autoscaling.knative.dev") for k in svc["metadata"].get("annotations", {}))
    assert svc["spec"]["template"]["metadata"]["annotations"] == {
        "autoscaling.knative.dev/class": "kpa.autoscaling.knative.dev",
        "autoscaling.knative.dev/initial-scale": "1",
        "autoscaling.knative.dev/max-scale": "5",
        "autoscaling.knative.dev/metric": "concurrency",
        "autoscaling.knative.dev/min-scale": "0",
        "autoscaling.knative.dev/scale-down-delay": "120s",
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period": "300s",
        "autoscaling.knative.dev/target": "3",
        "serving.knative.dev/progress-deadline": "1500s",
    }
    assert pod(svc)["containerConcurrency"] == 6
    assert pod(svc)["timeoutSeconds"] == 900


def test_default_progress_deadline_is_fifteen_minutes() -> None:
    svc = service(base("  model: {repository: 's3://m/r'}"))
    assert svc["spec"]["template"]["metadata"]["annotations"]["serving.knative.dev/progress-deadline"] == "900s"


def test_credentials_by_reference_only() -> None:
    svc = service(GPU_SPEC)
    assert container(svc)["envFrom"] == [{"secretRef": {"name": "creds"}}]
    assert "creds" not in str(container(svc).get("env", ""))


def test_hardened_container() -> None:
    sc = container(service(GPU_SPEC))["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_shared_memory_volume() -> None:
    svc = service(GPU_SPEC)
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "4Gi"}} in pod(svc)["volumes"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container(svc)["volumeMounts"]


def test_labels_and_cluster_local_visibility() -> None:
    svc = service(base("  model: {repository: 's3://m/r'}\n  triggers: {http: {visibility: cluster-local}}"))
    assert svc["metadata"]["labels"] == {
        "app.kubernetes.io/name": "fn",
        "app.kubernetes.io/managed-by": "aifn-operator",
        "aifn.dev/function": "fn",
        "networking.knative.dev/visibility": "cluster-local",
    }
    assert "networking.knative.dev/visibility" not in service(base("  model: {repository: 's3://m/r'}"))["metadata"]["labels"]


def test_pvc_is_mounted_read_only_with_sub_path() -> None:
    svc = service(base("  model: {repository: 'pvc://store/models/v2'}"))
    assert {"name": "model-store", "persistentVolumeClaim": {"claimName": "store", "readOnly": True}} in pod(svc)["volumes"]
    assert {"name": "model-store", "mountPath": "/mnt/models", "readOnly": True, "subPath": "models/v2"} in container(svc)["volumeMounts"]
    assert "--model-repository=/mnt/models" in container(svc)["args"]
    assert "initContainers" not in pod(svc)


def test_storage_initializer_for_http_sources() -> None:
    svc = service(base("  model: {repository: 'https://example.com/repo.tar.gz', credentialsSecret: dl}"))
    init = pod(svc)["initContainers"][0]
    assert init["name"] == "storage-initializer"
    assert init["args"] == ["https://example.com/repo.tar.gz", "/mnt/models"]
    assert init["envFrom"] == [{"secretRef": {"name": "dl"}}]
    assert {"name": "model-store", "emptyDir": {}} in pod(svc)["volumes"]
    assert {"name": "model-store", "mountPath": "/mnt/models", "readOnly": True} in container(svc)["volumeMounts"]


def test_owner_reference_when_rendered_from_the_apiserver() -> None:
    obj = yaml.safe_load(base("  model: {repository: 's3://m/r'}"))
    obj["metadata"]["uid"] = "1234"
    svc = render(parse_function(obj), CONFIG)[0]
    assert svc["metadata"]["ownerReferences"] == [
        {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "name": "fn", "uid": "1234", "controller": True, "blockOwnerDeletion": True}
    ]


def test_operator_config_sets_default_image() -> None:
    fn = parse_function(yaml.safe_load(base("  model: {repository: 's3://m/r'}")))
    svc = render(fn, OperatorConfig(triton_image="registry.local/triton:x"))[0]
    assert container(svc)["image"] == "registry.local/triton:x"


def test_local_path_cannot_be_served_by_a_cluster() -> None:
    fn = parse_function(yaml.safe_load(base("  model: {repository: ../model_repo}")))
    with pytest.raises(InvalidSpec) as err:
        render(fn, CONFIG)
    assert err.value.errors[0].path == "spec.model.repository"
    assert "aifn run" in err.value.errors[0].message


HANDLER_SPEC = base("""
  model: {repository: "s3://m/r", version: 2}
  handler: {entrypoint: "app:lambda_handler", code: "def lambda_handler(e, c): return {}"}
  resources: {gpu: {count: 1}}
  triggers:
    schedules: [{name: tick, cron: "@hourly"}]
    events: [{name: up, filter: {attributes: {type: t}}}]
""")


def test_handler_is_the_serving_container_and_triton_a_probed_sidecar() -> None:
    objects = render(parse_function(yaml.safe_load(HANDLER_SPEC)), CONFIG)
    svc = objects[0]
    handler, triton = pod(svc)["containers"]
    assert handler["name"] == "handler" and handler["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert "ports" not in triton
    assert triton["readinessProbe"] == {"httpGet": {"path": "/v2/health/ready", "port": 8000}}
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1" and "resources" in handler
    env = {e["name"]: e["value"] for e in handler["env"]}
    assert env["AIFN_HANDLER_ENTRYPOINT"] == "app:lambda_handler" and env["AIFN_TRITON_URL"] == "127.0.0.1:8000" and env["AIFN_MODEL_VERSION"] == "2"
    assert {"name": "handler-code", "configMap": {"name": objects[1]["metadata"]["name"], "items": [{"key": "app.py", "path": "app.py"}]}} in pod(svc)["volumes"]
    assert [o["kind"] for o in objects] == ["Service", "ConfigMap", "PingSource", "Trigger"]
    assert objects[1]["data"] == {"app.py": "def lambda_handler(e, c): return {}"}
    assert objects[2]["spec"]["sink"] == objects[3]["spec"]["subscriber"] == {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "fn"}}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("a", "b-c"), ("a-b", "c")),  # equal readable prefixes: the issue's example
        (("fn", "handler"), ("fn-handler", "x")),
        (("f" * 57, "a" * 40), ("f" * 57, "b" * 40)),  # both cut to the same 54-character prefix
    ],
)
def test_child_names_of_different_functions_or_parts_differ(first: tuple[str, str], second: tuple[str, str]) -> None:
    assert child_name(*first) != child_name(*second)


@pytest.mark.parametrize(("function", "part"), [("a", "b"), ("fn", "handler"), ("f" * 57, "a" * 40), ("f" * 10, "a-" * 20)])
def test_child_names_are_dns_labels_of_at_most_63_characters(function: str, part: str) -> None:
    name = child_name(function, part)
    assert len(name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert name.startswith(f"{function}-{part}"[:54]) and name == child_name(function, part), "readable and deterministic"


def test_a_users_object_named_fn_dash_part_is_not_a_child_name() -> None:
    """Users name their own objects `<fn>-handler` (the examples did); the operator's ConfigMap is never that."""
    objects = render(parse_function(yaml.safe_load(HANDLER_SPEC)), CONFIG)
    names = [o["metadata"]["name"] for o in objects[1:]]
    assert names == [child_name("fn", "handler"), child_name("fn", "tick"), child_name("fn", "up")]
    assert not {"fn-handler", "fn-tick", "fn-up"} & set(names)


def test_handler_baked_into_image_has_no_code_volume() -> None:
    svc = service(base("  model: {repository: 's3://m/r'}\n  handler: {entrypoint: 'app:Model', image: 'reg/h:1'}"))
    handler = pod(svc)["containers"][0]
    assert handler["image"] == "reg/h:1" and "volumeMounts" not in handler
    assert not any(v["name"] == "handler-code" for v in pod(svc)["volumes"])


def test_handler_gets_the_request_timeout_and_a_default_memory_limit() -> None:
    """spec.timeoutSeconds reaches the handler (its per-call timeout, 504); memory is bounded without spec.handler.memory."""
    svc = render(parse_function(yaml.safe_load(HANDLER_SPEC.replace("  resources:", "  timeoutSeconds: 42\n  resources:"))), CONFIG)[0]
    handler = pod(svc)["containers"][0]
    env = {e["name"]: e.get("value") for e in handler["env"]}
    assert env["AIFN_REQUEST_TIMEOUT_SECONDS"] == "42"
    assert handler["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    unset = pod(render(parse_function(yaml.safe_load(HANDLER_SPEC)), CONFIG)[0])["containers"][0]
    assert "AIFN_REQUEST_TIMEOUT_SECONDS" not in {e["name"] for e in unset["env"]}, "Knative's default (300 s) is the runtime's too"
    sized = pod(render(parse_function(yaml.safe_load(HANDLER_SPEC.replace("code:", "memory: 1Gi, code:"))), CONFIG)[0])["containers"][0]
    assert sized["resources"] == {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


def test_a_change_of_inline_code_changes_the_revision_template() -> None:
    """Knative rolls out a new Revision only for a template change: the code's digest is in the template."""
    def template(code: str) -> dict[str, Any]:
        return service(base(f"""
  model: {{repository: "s3://m/r"}}
  handler: {{entrypoint: "h:f", code: {code!r}}}
"""))["spec"]["template"]

    one, same, other = template("def f(e, c):\n    return 1\n"), template("def f(e, c):\n    return 1\n"), template("def f(e, c):\n    return 2\n")
    assert one == same
    assert one["metadata"]["annotations"]["aifn.dev/handler-code-sha256"] != other["metadata"]["annotations"]["aifn.dev/handler-code-sha256"]
    assert "aifn.dev/handler-code-sha256" not in service(base("  model: {repository: 's3://m/r'}"))["spec"]["template"]["metadata"]["annotations"]
