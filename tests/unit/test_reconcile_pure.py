"""The pure helpers of a reconcile pass: drift detection, pod scheduling, operator options."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from aifunction_operator.commands.operator import OperatorOptions, with_flags
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.controller.children import covers, is_ours
from aifunction_operator.controller.state import unschedulable_message

DESIRED = {"metadata": {"name": "fn", "labels": {"a": "1"}}, "spec": {"template": {"spec": {"containers": [{"name": "triton", "image": "t:1", "args": ["--x"]}]}}}}


def live(**changes: Any) -> dict[str, Any]:
    container = {"name": "triton", "image": "t:1", "args": ["--x"], "terminationMessagePolicy": "File"}
    container.update(changes)
    return {"metadata": {"name": "fn", "labels": {"a": "1", "extra": "2"}, "generation": 3}, "spec": {"template": {"spec": {"containers": [container], "timeoutSeconds": 300}}, "traffic": []}, "status": {}}


def test_fields_added_by_the_server_are_not_drift() -> None:
    assert covers(live(), DESIRED)


@pytest.mark.parametrize("changes", [{"image": "evil:1"}, {"args": ["--x", "--y"]}, {"args": []}])
def test_changed_owned_fields_are_drift(changes: dict[str, Any]) -> None:
    assert not covers(live(**changes), DESIRED)


def test_missing_fields_and_list_length_are_drift() -> None:
    edited = live()
    del edited["metadata"]["labels"]["a"]
    assert not covers(edited, DESIRED)
    edited = live()
    edited["spec"]["template"]["spec"]["containers"].append({"name": "sidecar"})
    assert not covers(edited, DESIRED)
    assert not covers(None, DESIRED)


def pod(phase: str, *conditions: dict[str, str]) -> dict[str, Any]:
    return {"status": {"phase": phase, "conditions": list(conditions)}}


def test_unschedulable_pending_pod_yields_the_scheduler_message() -> None:
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    assert unschedulable_message(pod("Pending", {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message})) == message


@pytest.mark.parametrize(
    "body",
    [
        pod("Pending"),
        pod("Pending", {"type": "PodScheduled", "status": "True"}),
        pod("Pending", {"type": "PodScheduled", "status": "False", "reason": "SchedulerError"}),
        pod("Running", {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}),
    ],
)
def test_other_pods_are_not_waiting_for_a_node(body: dict[str, Any]) -> None:
    assert unschedulable_message(body) is None


def args(**kw: Any) -> argparse.Namespace:
    base = {"namespace": [], "health_port": 8080, "metrics_port": 9090, "log_format": None, "peering": None, "standalone": False, "priority": None, "verbose": False}
    return argparse.Namespace(**{**base, **kw})


def test_options_default_to_all_namespaces_and_text_logs() -> None:
    options = OperatorOptions.from_args(args(), env={})
    assert options.namespaces == () and options.log_format == "text"


def test_options_from_environment_and_flags_win() -> None:
    env = {"AIFN_NAMESPACES": "a, b,,", "AIFN_LOG_FORMAT": "json"}
    assert OperatorOptions.from_args(args(), env=env).namespaces == ("a", "b")
    assert OperatorOptions.from_args(args(), env=env).log_format == "json"
    flagged = OperatorOptions.from_args(args(namespace=["c"], log_format="text"), env=env)
    assert (flagged.namespaces, flagged.log_format) == (("c",), "text")


def test_image_and_namespace_flags_override_the_environment() -> None:
    env_config = OperatorConfig.from_env({"AIFN_TRITON_IMAGE": "env/triton:1", "AIFN_KNATIVE_NAMESPACE": "kn"})
    flags = argparse.Namespace(triton_image="flag/triton:2", storage_initializer_image=None, knative_namespace=None)
    config = with_flags(env_config, flags)
    assert (config.triton_image, config.knative_namespace, config.storage_initializer_image) == ("flag/triton:2", "kn", OperatorConfig().storage_initializer_image)


def test_a_service_is_ours_by_controller_reference_or_our_field_manager() -> None:
    controlled = {"metadata": {"ownerReferences": [{"uid": "u1", "controller": True}]}}
    assert is_ours(controlled, "u1") and not is_ours(controlled, "u2")
    stripped = {"metadata": {"managedFields": [{"manager": "kubectl"}, {"manager": "aifn-operator", "operation": "Apply"}]}}
    assert is_ours(stripped, "u1")
    assert not is_ours({"metadata": {"managedFields": [{"manager": "kubectl"}]}}, "u1")
    assert not is_ours({"metadata": {"ownerReferences": [{"uid": "u1", "controller": False}]}}, "u1")
