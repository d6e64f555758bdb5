"""The AIFunction CRD on a real apiserver: examples apply, invalid functions are refused with our messages."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.integration

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "examples").glob("handlers/*/*.yaml"))


def _functions(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc and doc.get("kind") == "AIFunction"]


def _base_function(name: str = "fn") -> dict[str, Any]:
    return {
        "apiVersion": "aifn.dev/v1alpha1",
        "kind": "AIFunction",
        "metadata": {"name": name},
        "spec": {"model": {"name": "digits", "repository": "gs://bucket/models"}},
    }


def _apply(control_plane: ControlPlane, namespace: str, obj: dict[str, Any], *extra: str) -> tuple[int, str]:
    result = control_plane.kubectl("apply", "--validate=strict", "-n", namespace, *extra, "-f", "-",
                                   input=yaml.safe_dump(obj), check=False)
    return result.returncode, result.stdout + result.stderr


def _is_subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _is_subset(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and len(expected) == len(actual) and all(
            _is_subset(e, a) for e, a in zip(expected, actual))
    return expected == actual


def test_crd_serves_v1alpha1(control_plane: ControlPlane) -> None:
    crd = control_plane.get_json("crd", "aifunctions.aifn.dev")
    versions = {v["name"]: v for v in crd["spec"]["versions"]}
    assert versions["v1alpha1"]["served"] and versions["v1alpha1"]["storage"]
    assert crd["spec"]["scope"] == "Namespaced"


def test_examples_exist() -> None:
    assert EXAMPLES, "examples/*.yaml is empty"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_applies_and_round_trips(control_plane: ControlPlane, namespace: str, path: Path) -> None:
    functions = _functions(path)
    assert functions, f"{path} holds no AIFunction"
    for function in functions:
        function = copy.deepcopy(function)
        function["metadata"].pop("namespace", None)
        code, output = _apply(control_plane, namespace, function)
        assert code == 0, output
        stored = control_plane.get_json("aifunction", function["metadata"]["name"], "-n", namespace)
        # Nothing pruned: every field written is stored with the same value.
        assert _is_subset(function["spec"], stored["spec"]), (function["spec"], stored["spec"])


def test_kubectl_apply_of_examples_directory(control_plane: ControlPlane, namespace: str) -> None:
    """The documented path, `kubectl apply -f examples/`, with examples that set no namespace."""
    unnamespaced = [p for p in EXAMPLES if all("namespace" not in f["metadata"] for f in _functions(p))]
    if not unnamespaced:
        pytest.skip("every example sets its own namespace")
    files = [arg for p in unnamespaced for arg in ("-f", str(p))]
    result = control_plane.kubectl("apply", "--validate=strict", "-n", namespace, *files)
    assert result.stdout.count("aifunction.aifn.dev/") == sum(len(_functions(p)) for p in unnamespaced)


REJECTIONS = [
    pytest.param(
        {"scaling": {"minReplicas": 3, "maxReplicas": 1}},
        "spec.scaling.maxReplicas must be >= spec.scaling.minReplicas",
        id="crossed-replica-bounds",
    ),
    pytest.param(
        {"scaling": {"minReplicas": -1}},
        "spec.scaling.minReplicas: Invalid value: -1: spec.scaling.minReplicas in body should be greater than or equal to 0",
        id="negative-min-replicas",
    ),
    pytest.param(
        {"scaling": {"maxReplicas": 4, "initialReplicas": 9}},
        "spec.scaling.initialReplicas must be <= spec.scaling.maxReplicas",
        id="initial-above-max",
    ),
    pytest.param(
        {"model": {"name": "digits", "repository": "ftp://host/models"}},
        "spec.model.repository must use s3, gs, as, pvc",
        id="unsupported-repository-scheme",
    ),
    pytest.param(
        {"runtime": {"protocol": "websocket"}},
        'spec.runtime.protocol: Unsupported value: "websocket"',
        id="unknown-protocol",
    ),
    pytest.param(
        {"resources": {"gpu": {"product": "NVIDIA-A100"}}},
        "spec.resources.gpu.product needs spec.resources.gpu.count > 0",
        id="gpu-product-without-count",
    ),
    pytest.param(
        {"runtime": {"args": ["--http-restricted-api=model-repository:k=v"]}},
        "spec.runtime.args must not restrict Triton's model-repository, shared-memory, trace or logging APIs",
        id="args-re-restricting-refused-apis",
    ),
    pytest.param(
        {"bogus": True},
        'unknown field "spec.bogus"',
        id="unknown-field-strict",
    ),
]


@pytest.mark.parametrize(("spec_patch", "message"), REJECTIONS)
def test_invalid_function_is_rejected_with_message(
    control_plane: ControlPlane, namespace: str, spec_patch: dict[str, Any], message: str
) -> None:
    function = _base_function()
    function["spec"].update(spec_patch)
    code, output = _apply(control_plane, namespace, function)
    assert code != 0, f"apiserver accepted an invalid AIFunction:\n{output}"
    assert message in output
    assert control_plane.kubectl("get", "aifunction", "fn", "-n", namespace, check=False).returncode != 0


def test_name_longer_than_knative_allows_is_rejected(control_plane: ControlPlane, namespace: str) -> None:
    code, output = _apply(control_plane, namespace, _base_function("f" * 58))
    assert code != 0
    assert "metadata.name must be a DNS-1035 label of at most 57 characters" in output


def test_the_same_function_without_the_fault_is_accepted(control_plane: ControlPlane, namespace: str) -> None:
    """Control for the rejections above: the base function itself is valid."""
    function = _base_function()
    function["spec"]["scaling"] = {"minReplicas": 1, "maxReplicas": 3}
    code, output = _apply(control_plane, namespace, function)
    assert code == 0, output
