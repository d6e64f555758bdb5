"""Rendered Knative Services pass the real Knative CRD and Knative's own validation (ksvc-check);
Services that Knative's webhook would refuse are refused by ksvc-check with Knative's messages."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import BIN, ROOT, ControlPlane

from aifunction_operator.commands.render import dump_yaml_stream

pytestmark = pytest.mark.integration

KSVC_CHECK = BIN / "ksvc-check"
FUNCTIONS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "tests" / "unit" / "cases").glob("*.yaml"))
GOLDEN = sorted((ROOT / "tests" / "unit" / "golden").glob("*.yaml"))

# AIFunctions that are not in the repository, covering the spec's options in new combinations.
NEW_FUNCTIONS: dict[str, dict[str, Any]] = {
    "s3-cpu-rps": {
        "model": {"name": "m", "repository": "s3://bucket/repo", "credentialsSecret": "s3-creds", "version": 2},
        "resources": {"cpu": "500m", "memory": "1Gi"},
        "scaling": {"metric": "rps", "targetRequestsPerSecond": 20, "minReplicas": 0, "maxReplicas": 4,
                    "scaleDownDelay": "10m", "scaleToZeroRetention": "1m"},
        "timeoutSeconds": 120,
    },
    "gpu-everything": {
        "model": {"name": "llm", "repository": "hf://org/model", "credentialsSecret": "hf"},
        "runtime": {"image": "nvcr.io/nvidia/tritonserver:24.10-py3", "args": ["--log-verbose=1"],
                    "env": [{"name": "A", "value": "b"},
                            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]},
        "resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}, "cpu": "4", "memory": "16Gi",
                      "sharedMemory": "1Gi"},
        "placement": {"nodeSelector": {"pool": "gpu"}, "runtimeClassName": "nvidia",
                      "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                      "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                          {"weight": 10, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                                             "labelSelector": {"matchLabels": {"a": "b"}}}}]}}},
        "scaling": {"minReplicas": 1, "maxReplicas": 8, "initialReplicas": 2, "targetConcurrency": 2,
                    "containerConcurrency": 4, "startupTimeout": "45m"},
        "triggers": {"http": {"visibility": "external"}},
    },
    "grpc-pvc-cluster-local": {
        "model": {"name": "ranker", "repository": "pvc://models/ranker"},
        "runtime": {"protocol": "grpc"},
        "scaling": {"maxReplicas": 1},
        "triggers": {"http": {"visibility": "cluster-local"}},
    },
    # Found by tests/integration/test_spec_fuzz.py: PyYAML writes the names y and n plain, and
    # kubectl/Knative's YAML 1.1 decoder read them as booleans; `aifn render` quotes them.
    "names-y-and-n": {
        "model": {"name": "m", "repository": "s3://b/r", "credentialsSecret": "n"},
        "placement": {"runtimeClassName": "y"},
    },
    "scale-to-zero-start": {
        "model": {"name": "m", "repository": "gs://b/r"},
        "scaling": {"minReplicas": 0, "initialReplicas": 0, "maxReplicas": 2},
    },
}
# Cluster settings a function needs beyond the recommended feature flags, as the README says.
CLUSTER_SETTINGS: dict[str, list[str]] = {
    "scale-to-zero-start": ["--autoscaler", "allow-zero-initial-scale=true"],
}


def _aifn() -> list[str]:
    script = Path(sys.executable).parent / "aifn"
    return [str(script)] if script.exists() else [sys.executable, "-m", "aifunction_operator"]


def render(source: Path | str) -> str:
    """`aifn render -f` of a file, or of YAML text given on stdin."""
    if isinstance(source, Path):
        result = subprocess.run([*_aifn(), "render", "-f", str(source)], capture_output=True, text=True)
    else:
        result = subprocess.run([*_aifn(), "render", "-f", "-"], input=source, capture_output=True, text=True)
    assert result.returncode == 0, f"aifn render failed:\n{result.stderr}"
    return result.stdout


def ksvc_check(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KSVC_CHECK), *args], input=stdin, capture_output=True, text=True, timeout=60)


def services(stream: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(stream) if d and d.get("kind") == "Service"
            and d.get("apiVersion") == "serving.knative.dev/v1"]


def server_dry_run(control_plane: ControlPlane, namespace: str, stream: str) -> subprocess.CompletedProcess[str]:
    """Server-side dry-run apply of every object of `stream`, moved into `namespace`, strict fields."""
    docs = [d for d in yaml.safe_load_all(stream) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    return control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                                 "--field-manager=aifn-test", "-f", "-", input=dump_yaml_stream(docs), check=False)


@pytest.fixture(scope="module", autouse=True)
def _needs_ksvc_check() -> None:
    if not KSVC_CHECK.exists():
        pytest.skip(f"{KSVC_CHECK} missing; run `make tools`")


@pytest.fixture(scope="module")
def digits_service() -> dict[str, Any]:
    """A valid rendered Service to break in one way per test."""
    found = services(render(ROOT / "examples" / "digits.yaml"))
    assert len(found) == 1
    return found[0]


# Rendered output is accepted --------------------------------------------------------------------

def test_inputs_exist() -> None:
    assert FUNCTIONS and GOLDEN


@pytest.mark.parametrize("path", FUNCTIONS, ids=lambda p: p.stem)
def test_rendered_function_passes_apiserver_and_knative_validation(
    control_plane: ControlPlane, namespace: str, path: Path
) -> None:
    stream = render(path)
    rendered = services(stream)
    assert len(rendered) == 1, "aifn render should emit exactly one Knative Service"
    applied = server_dry_run(control_plane, namespace, stream)
    assert applied.returncode == 0, applied.stderr
    assert f"service.serving.knative.dev/{rendered[0]['metadata']['name']} serverside-applied" in applied.stdout

    checked = ksvc_check(stdin=stream)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ": valid" in checked.stdout


def test_golden_renders_pass_knative_validation() -> None:
    checked = ksvc_check(*map(str, GOLDEN))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expected = sum(len(services(p.read_text())) for p in GOLDEN)
    assert checked.stdout.count(": valid") == expected


@pytest.mark.parametrize("name", sorted(NEW_FUNCTIONS))
def test_new_function_renders_to_a_valid_service(control_plane: ControlPlane, namespace: str, name: str) -> None:
    function = {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction",
                "metadata": {"name": name}, "spec": NEW_FUNCTIONS[name]}
    stored = control_plane.kubectl("apply", "--validate=strict", "-n", namespace, "-f", "-",
                                   input=json.dumps(function), check=False)  # JSON: PyYAML writes y and n plain
    assert stored.returncode == 0, f"the AIFunction CRD refused the function: {stored.stderr}"
    stream = render(yaml.safe_dump(function))
    applied = server_dry_run(control_plane, namespace, stream)
    assert applied.returncode == 0, applied.stderr
    checked = ksvc_check(*CLUSTER_SETTINGS.get(name, []), stdin=stream)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    if name in CLUSTER_SETTINGS:  # and the setting is really needed
        assert ksvc_check(stdin=stream).returncode == 1


# Known-bad Services are refused with Knative's messages -----------------------------------------

def _container(service: dict[str, Any]) -> dict[str, Any]:
    return service["spec"]["template"]["spec"]["containers"][0]


def _two_containers_with_ports(service: dict[str, Any]) -> None:
    service["spec"]["template"]["spec"]["containers"].append(
        {"name": "sidecar", "image": "busybox", "ports": [{"containerPort": 9000}]})


def _reserved_port(service: dict[str, Any]) -> None:
    _container(service)["ports"] = [{"name": "http1", "containerPort": 8012}]


def _autoscaling_on_service_metadata(service: dict[str, Any]) -> None:
    service["metadata"].setdefault("annotations", {})["autoscaling.knative.dev/min-scale"] = "1"


def _negative_min_scale(service: dict[str, Any]) -> None:
    service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] = "-1"


def _lifecycle_hook(service: dict[str, Any]) -> None:
    _container(service)["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", "1"]}}}


BAD_SERVICES = [
    pytest.param(_two_containers_with_ports, "more than one container port is set", id="two-containers-with-ports"),
    pytest.param(_reserved_port, "8012 is a reserved port", id="reserved-port-8012"),
    pytest.param(_autoscaling_on_service_metadata,
                 'autoscaling annotations must be put under "spec.template.metadata.annotations" to work',
                 id="autoscaling-annotation-on-service-metadata"),
    pytest.param(_negative_min_scale, "expected 0 <= -1 <= 2147483647: "
                 "spec.template.metadata.annotations.autoscaling.knative.dev/min-scale", id="min-scale-negative"),
    pytest.param(_lifecycle_hook, "must not set the field(s): spec.template.spec.containers[0].lifecycle",
                 id="masked-lifecycle-field"),
]


@pytest.mark.parametrize(("breaker", "message"), BAD_SERVICES)
def test_ksvc_check_rejects_what_knative_rejects(digits_service: dict[str, Any], breaker: Any, message: str) -> None:
    service = copy.deepcopy(digits_service)
    breaker(service)
    checked = ksvc_check(stdin=yaml.safe_dump(service))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert message in checked.stdout
    assert "Service default/digits (stdin#0): invalid: " in checked.stdout


@pytest.mark.parametrize("breaker", [_reserved_port, _autoscaling_on_service_metadata, _negative_min_scale],
                         ids=["reserved-port-8012", "autoscaling-annotation-on-service-metadata", "min-scale-negative"])
def test_the_crd_alone_accepts_these_which_is_why_ksvc_check_exists(
    control_plane: ControlPlane, namespace: str, digits_service: dict[str, Any], breaker: Any
) -> None:
    service = copy.deepcopy(digits_service)
    breaker(service)
    applied = server_dry_run(control_plane, namespace, yaml.safe_dump(service))
    assert applied.returncode == 0, applied.stderr


def test_disabled_feature_flag_is_reported(digits_service: dict[str, Any]) -> None:
    service = copy.deepcopy(digits_service)
    service["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "gpu"}
    stream = yaml.safe_dump(service)
    assert ksvc_check(stdin=stream).returncode == 0  # enabled among the recommended flags
    checked = ksvc_check("--features", "kubernetes.podspec-nodeselector=disabled", stdin=stream)
    assert checked.returncode == 1
    assert "must not set the field(s): spec.template.spec.nodeSelector" in checked.stdout
    # Knative's own defaults (no recommended flags) refuse it too.
    assert ksvc_check("--no-recommended-features", stdin=stream).returncode == 1


def test_zero_initial_scale_depends_on_cluster_autoscaler_config(digits_service: dict[str, Any]) -> None:
    service = copy.deepcopy(digits_service)
    service["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/initial-scale"] = "0"
    stream = yaml.safe_dump(service)
    refused = ksvc_check(stdin=stream)
    assert refused.returncode == 1 and "initial-scale=0 not allowed by cluster" in refused.stdout
    assert ksvc_check("--autoscaler", "allow-zero-initial-scale=true", stdin=stream).returncode == 0


def test_unknown_fields_are_refused_unless_allowed(digits_service: dict[str, Any]) -> None:
    service = copy.deepcopy(digits_service)
    _container(service)["bogus"] = 1
    stream = yaml.safe_dump(service)
    checked = ksvc_check(stdin=stream)
    assert checked.returncode == 1 and 'unknown field "bogus"' in checked.stdout
    assert ksvc_check("--allow-unknown-fields", stdin=stream).returncode == 0


def test_every_error_of_every_object_is_reported(tmp_path: Path, digits_service: dict[str, Any]) -> None:
    good, bad = copy.deepcopy(digits_service), copy.deepcopy(digits_service)
    bad["metadata"]["name"] = "broken"
    _reserved_port(bad)
    _negative_min_scale(bad)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    checked = ksvc_check(str(tmp_path / "good.yaml"), str(tmp_path / "bad.yaml"))
    assert checked.returncode == 1
    assert f"Service default/digits ({tmp_path / 'good.yaml'}#0): valid" in checked.stdout
    invalid = [line for line in checked.stdout.splitlines() if line.startswith("Service default/broken")]
    assert len(invalid) == 2, checked.stdout
    assert "1 of 2 Knative object(s) invalid" in checked.stderr


# Input handling ---------------------------------------------------------------------------------

def test_other_objects_are_skipped_with_a_note(digits_service: dict[str, Any]) -> None:
    stream = yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}},
        {"apiVersion": "sources.knative.dev/v1", "kind": "PingSource", "metadata": {"name": "tick"}},
        digits_service,
    ])
    checked = ksvc_check(stdin=stream)
    assert checked.returncode == 0, checked.stderr
    assert "ConfigMap cm (stdin#0): skipped" in checked.stderr
    assert "PingSource tick (stdin#1): skipped" in checked.stderr
    assert "Service default/digits (stdin#2): valid" in checked.stdout


def test_a_list_object_is_checked_item_by_item(digits_service: dict[str, Any]) -> None:
    bad = copy.deepcopy(digits_service)
    _reserved_port(bad)
    stream = yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [digits_service, bad]})
    checked = ksvc_check(stdin=stream)
    assert checked.returncode == 1
    assert "(stdin#0.items[0]): valid" in checked.stdout and "(stdin#0.items[1]): invalid" in checked.stdout


def test_input_without_knative_objects_is_an_error_unless_allowed() -> None:
    empty = ksvc_check(stdin="# nothing\n---\n")
    assert empty.returncode == 3 and "no serving.knative.dev/v1 object" in empty.stderr
    assert ksvc_check("--allow-empty", stdin="").returncode == 0


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--features", "novalue"], "", '"novalue" is not key=value'),
    (["--no-such-flag"], "", "flag provided but not defined"),
    ([], "kind: [unclosed", "stdin: document 0"),
    (["/no/such/file.yaml"], None, "/no/such/file.yaml"),
])
def test_bad_usage_and_unreadable_input_exit_2(args: list[str], stdin: str | None, message: str) -> None:
    checked = ksvc_check(*args, stdin=stdin)
    assert checked.returncode == 2
    assert message in checked.stderr


def test_version_names_the_pinned_knative_module() -> None:
    go_mod = (ROOT / "hack" / "tools" / "ksvc-check" / "go.mod").read_text()
    pinned = next(line.split()[1] for line in go_mod.splitlines() if line.strip().startswith("knative.dev/serving "))
    assert ksvc_check("--version").stdout.strip() == f"ksvc-check knative.dev/serving {pinned}"
