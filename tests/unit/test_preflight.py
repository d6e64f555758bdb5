"""Pre-flight: the Knative feature flags a rendered Service needs, and which are off."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.preflight import (
    AUTOSCALER_CONFIGMAP,
    FEATURES_CONFIGMAP,
    INIT_CONTAINERS,
    PVC,
    find_blockers,
    flag_value,
    is_on,
    required_flags,
)
from aifunction_operator.render import render_service
from aifunction_operator.spec import parse_function

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def service_for(spec: dict, name: str = "fn") -> dict:
    body = {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": name, "namespace": "ns"}, "spec": spec}
    return render_service(parse_function(body), OperatorConfig())


def example_service(name: str) -> dict:
    return render_service(parse_function(yaml.safe_load((EXAMPLES / name).read_text())), OperatorConfig())


def keys(service: dict) -> list[str]:
    return [r.flag.key for r in required_flags(service)]


S3 = {"model": {"name": "m", "repository": "s3://bucket/repo"}}


def test_a_plain_cpu_function_needs_only_default_on_flags() -> None:
    service = service_for(S3)
    assert keys(service) == ["kubernetes.podspec-volumes-emptydir"]
    assert find_blockers(service, {}, {}) == []


@pytest.mark.parametrize(
    ("spec_extra", "expected"),
    [
        ({"resources": {"gpu": {"count": 1}}}, "kubernetes.podspec-tolerations"),
        ({"resources": {"gpu": {"count": 1, "product": "NVIDIA-L4"}}}, "kubernetes.podspec-nodeselector"),
        ({"placement": {"affinity": {"nodeAffinity": {}}}}, "kubernetes.podspec-affinity"),
        ({"placement": {"runtimeClassName": "nvidia"}}, "kubernetes.podspec-runtimeclassname"),
    ],
)
def test_placement_fields_name_their_flag(spec_extra: dict, expected: str) -> None:
    service = service_for({**S3, **spec_extra})
    assert expected in keys(service)
    blockers = find_blockers(service, {}, {})
    assert expected in [b.key for b in blockers]
    assert all(b.configmap == FEATURES_CONFIGMAP for b in blockers)
    allowed = [b.key for b in find_blockers(service, {expected: "allowed"}, {})]
    assert expected not in allowed  # a field-mask flag: Allowed is enough


def test_pvc_needs_exactly_enabled() -> None:
    service = example_service("digits.yaml")
    assert PVC.key in keys(service)
    assert "kubernetes.podspec-persistent-volume-write" not in keys(service)  # mounted read-only
    assert [b.key for b in find_blockers(service, {PVC.key: "allowed"}, {})] == [PVC.key]
    assert find_blockers(service, {PVC.key: "Enabled"}, {}) == []


def test_storage_initializer_needs_init_containers() -> None:
    service = service_for({"model": {"name": "m", "repository": "hf://org/model"}})
    assert INIT_CONTAINERS.key in keys(service)
    blocker = next(b for b in find_blockers(service, {}, {}) if b.key == INIT_CONTAINERS.key)
    message = blocker.message("knative-serving")
    assert "spec.template.spec.initContainers" in message
    assert '`kubernetes.podspec-init-containers: "enabled"` in ConfigMap knative-serving/config-features' in message


def test_multi_container_and_sidecar_probes() -> None:
    service = service_for(S3)
    pod = service["spec"]["template"]["spec"]
    pod["containers"].append({"name": "sidecar", "image": "x", "readinessProbe": {"tcpSocket": {"port": 9}}})
    found = keys(service)
    assert "multi-container" in found and "multi-container-probing" in found
    assert [b.key for b in find_blockers(service, {}, {})] == ["multi-container-probing"]
    assert [b.key for b in find_blockers(service, {"multi-container": "disabled", "multi-container-probing": "enabled"}, {})] == ["multi-container"]


def test_writable_pvc_and_capabilities() -> None:
    service = service_for(S3)
    pod = service["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "rw", "persistentVolumeClaim": {"claimName": "c"}})
    pod["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_PTRACE"]
    pod["containers"][0]["env"] = [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
    found = keys(service)
    assert "kubernetes.podspec-fieldref" in found
    assert "kubernetes.podspec-persistent-volume-write" in found
    assert "kubernetes.containerspec-addcapabilities" in found


@pytest.mark.parametrize(("value", "expected"), [("Enabled", "enabled"), (" allowed ", "allowed"), ("DISABLED", "disabled"), ("bogus", "disabled"), (None, "disabled")])
def test_flag_values_are_case_insensitive_and_unknown_keeps_default(value: str | None, expected: str) -> None:
    features = {} if value is None else {PVC.key: value}
    assert flag_value(PVC, features) == expected
    assert is_on(PVC, features) is (expected == "enabled")


def test_scale_to_zero_disabled_cluster_wide_blocks_min_replicas_zero() -> None:
    service = service_for({**S3, "scaling": {"minReplicas": 0}})
    blockers = find_blockers(service, {}, {"enable-scale-to-zero": "false"})
    assert [(b.configmap, b.key, b.value) for b in blockers] == [(AUTOSCALER_CONFIGMAP, "enable-scale-to-zero", "true")]
    assert find_blockers(service, {}, {"enable-scale-to-zero": "true"}) == []
    assert find_blockers(service_for({**S3, "scaling": {"minReplicas": 1}}), {}, {"enable-scale-to-zero": "false"}) == []


def test_initial_scale_zero_needs_the_cluster_to_allow_it() -> None:
    service = service_for({**S3, "scaling": {"minReplicas": 0, "initialReplicas": 0}})
    assert [b.key for b in find_blockers(service, {}, {})] == ["allow-zero-initial-scale"]
    assert find_blockers(service, {}, {"allow-zero-initial-scale": "true"}) == []


def test_every_shipped_example_is_explained() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        if body.get("kind") != "AIFunction":
            continue
        service = example_service(path.name)
        everything_on = {r.flag.key: "enabled" for r in required_flags(service)}
        assert find_blockers(service, everything_on, {}) == [], path.name


HANDLER_CASE = Path(__file__).resolve().parent / "cases" / "handler-inline-triggers.yaml"


@pytest.mark.parametrize(
    ("features", "blocked"),
    [
        ({"kubernetes.podspec-persistent-volume-claim": "enabled"}, ["multi-container-probing"]),
        ({"kubernetes.podspec-persistent-volume-claim": "enabled", "multi-container-probing": "allowed"}, ["multi-container-probing"]),
        ({"kubernetes.podspec-persistent-volume-claim": "enabled", "multi-container-probing": "enabled"}, []),
        ({"kubernetes.podspec-persistent-volume-claim": "enabled", "multi-container-probing": "enabled", "multi-container": "disabled"}, ["multi-container"]),
    ],
)
def test_a_handler_function_needs_probing_of_its_triton_sidecar(features: dict[str, str], blocked: list[str]) -> None:
    service = render_service(parse_function(yaml.safe_load(HANDLER_CASE.read_text())), OperatorConfig())
    assert "multi-container-probing" in keys(service)
    found = find_blockers(service, features, {})
    assert [b.key for b in found] == blocked
    if blocked == ["multi-container-probing"]:
        assert found[0].reason.startswith("spec.template.spec.containers[1] probes")
