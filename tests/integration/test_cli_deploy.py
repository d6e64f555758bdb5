"""`aifn deploy` and `aifn delete` (child processes) against a real kube-apiserver, with the operator running.

No Knative controller or scheduler runs here: the test writes the Knative Service's status and a
pod's Unschedulable status (and the scheduler's Event) where they would; the rest is real.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.kube_client import KS_GROUP, KS_PLURAL, KS_VERSION, TestClient, function
from support.processes import wait_until

pytestmark = pytest.mark.integration
PROMPT = 10.0
FINISH = 90.0  # a deploy that has its answer ends within a poll; generous for a loaded machine
GPU_WAIT = "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector."


def aifn(kubeconfig: Path, *args: str, timeout: float = FINISH) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aifunction_operator", *args, "--kubeconfig", str(kubeconfig)],
                          capture_output=True, text=True, timeout=timeout)


def start(kubeconfig: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "aifunction_operator", *args, "--kubeconfig", str(kubeconfig)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=FINISH)
    print(out, err)
    return proc.returncode, out, err


def write(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / f"{body['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def in_order(text: str, *parts: str) -> bool:
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def test_deploy_follows_to_ready_prints_url_and_invoke_line_then_delete_waits(
        kube: TestClient, kubeconfig: Path, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    start_operator()
    path = write(tmp_path, function("digits"))
    proc = start(kubeconfig, "deploy", "-f", path, "-n", namespace, "--timeout", "2m")
    wait_until("the operator's Knative Service", lambda: kube.get_service(namespace, "digits"), PROMPT)
    kube.mark_service_ready(namespace, "digits")  # as Knative would, once the revision serves
    code, out, err = finish(proc)
    url = f"http://digits.{namespace}.example.com"
    assert code == 0, err
    assert in_order(out, f"aifunction.aifn.dev/digits created in namespace {namespace}", "spec accepted (generation 1)",
                    "Knative feature flags", "revision digits-00001 created", "Triton serving the model (revision digits-00001 ready)",
                    f"digits: Ready at {url}", f"URL:    {url}", f"Invoke: aifn invoke {url} --model digits --input NAME=VALUE"), out
    managers = {m["manager"]: m["operation"] for m in kube.get_function(namespace, "digits")["metadata"]["managedFields"]}  # type: ignore[index]
    assert managers.get("aifn-cli") == "Apply", managers

    again = aifn(kubeconfig, "deploy", "-f", path, "-n", namespace)
    assert again.returncode == 0 and "digits unchanged" in again.stdout and f"URL:    {url}" in again.stdout, again

    gone = aifn(kubeconfig, "delete", "-f", path, "-n", namespace)
    assert gone.returncode == 0, gone
    assert f"{namespace}/digits is gone, its Knative Service included" in gone.stdout
    assert kube.get_function(namespace, "digits") is None and kube.get_service(namespace, "digits") is None
    missing = aifn(kubeconfig, "delete", "digits", "-n", namespace)
    assert missing.returncode == 1 and "not found" in missing.stderr, missing


def test_a_function_that_fails_exits_1_with_its_reason_and_events(
        kube: TestClient, kubeconfig: Path, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "disabled"})
    start_operator()
    gpu = function("gpu", {"model": {"name": "m", "repository": "s3://models/triton"}, "resources": {"gpu": {"count": 1}}})
    result = aifn(kubeconfig, "deploy", "-f", write(tmp_path, gpu), "-n", namespace, "--timeout", "2m")
    print(result.stdout, result.stderr)
    assert result.returncode == 1
    assert f"error: {namespace}/gpu failed: KnativeFeatureDisabled: " in result.stderr
    assert "kubernetes.podspec-tolerations" in result.stderr and "Events:" in result.stderr
    assert "Knative feature flags: KnativeFeatureDisabled" in result.stdout


def test_a_function_waiting_for_a_gpu_node_exits_1_at_the_timeout_naming_the_wait(
        kube: TestClient, kubeconfig: Path, namespace: str, start_operator: Any, tmp_path: Path) -> None:
    kube.put_configmap(namespace, "config-features", {"kubernetes.podspec-tolerations": "enabled", "kubernetes.podspec-nodeselector": "enabled"})
    start_operator()
    gpu = function("gpu", {"model": {"name": "m", "repository": "s3://models/triton"}, "resources": {"gpu": {"count": 1, "product": "NVIDIA-B200"}}})
    proc = start(kubeconfig, "deploy", "-f", write(tmp_path, gpu), "-n", namespace, "--timeout", "25s")
    svc = wait_until("the operator's Knative Service", lambda: kube.get_service(namespace, "gpu"), PROMPT)
    # What Knative's controller, the Deployment and kube-scheduler would write (none runs here).
    kube.custom.patch_namespaced_custom_object_status(KS_GROUP, KS_VERSION, namespace, KS_PLURAL, "gpu", {"status": {
        "observedGeneration": svc["metadata"]["generation"], "latestCreatedRevisionName": "gpu-00001",
        "conditions": [{"type": "Ready", "status": "False", "reason": "RevisionFailed", "message": f'Revision "gpu-00001" failed with message: {GPU_WAIT}'}]}})
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "gpu-00001-deployment-7d9f-abcde",
                        "labels": {"aifn.dev/function": "gpu", "serving.knative.dev/service": "gpu", "serving.knative.dev/revision": "gpu-00001"}},
           "spec": {"containers": [{"name": "triton", "image": "nvcr.io/nvidia/tritonserver:26.08-py3"}]}}
    created = kube.core.create_namespaced_pod(namespace, pod)
    kube.core.patch_namespaced_pod_status(pod["metadata"]["name"], namespace, {"status": {"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": GPU_WAIT}]}})
    kube.core.create_namespaced_event(namespace, {
        "metadata": {"name": "gpu-00001-deployment-7d9f-abcde.1"}, "type": "Warning", "reason": "FailedScheduling", "message": GPU_WAIT,
        "involvedObject": {"kind": "Pod", "name": pod["metadata"]["name"], "namespace": namespace, "uid": created.metadata.uid},
        "source": {"component": "default-scheduler"}, "firstTimestamp": created.metadata.creation_timestamp,
        "lastTimestamp": created.metadata.creation_timestamp, "count": 1})
    code, out, err = finish(proc)
    assert code == 1
    assert "gpu: waiting for a GPU node: WaitingForGPUNode: " + GPU_WAIT in out
    assert f"error: {namespace}/gpu is not Ready after --timeout 25s: WaitingForGPUNode: {GPU_WAIT}" in err
    events = err.partition("Events:")[2]
    assert in_order(events, "Warning  FailedScheduling", "default-scheduler", f"Pod/{pod['metadata']['name']}", GPU_WAIT), err


BAD = [
    pytest.param({"model": {"nmae": "digits", "repository": "s3://models/triton"}}, "spec.model.nmae: unknown field", id="typo"),
    pytest.param({"model": {"name": "digits", "repository": "./model_repo"}}, "spec.model.repository: the local path './model_repo' works only with `aifn run`", id="local-path"),
    pytest.param({"model": {"name": "digits", "repository": "s3://m"}, "scaling": {"minReplicas": 3, "maxReplicas": 1}}, "spec.scaling.maxReplicas", id="cross-field"),
]


@pytest.mark.parametrize(("spec", "named"), BAD)
def test_a_bad_file_exits_2_naming_the_field_and_applies_nothing(
        kube: TestClient, kubeconfig: Path, namespace: str, tmp_path: Path, spec: dict[str, Any], named: str) -> None:
    path = write(tmp_path, function("bad", spec))
    result = aifn(kubeconfig, "deploy", "-f", path, "-n", namespace)
    assert result.returncode == 2, result
    assert f"{path}: {named}" in result.stderr and "Traceback" not in result.stderr
    assert kube.list_functions(namespace) == []
