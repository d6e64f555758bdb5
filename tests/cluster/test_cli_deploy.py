"""`aifn deploy` and `aifn delete` on the real cluster, as a user runs them (child processes, the cluster's kubeconfig).

examples/digits.yaml (CPU request lowered as tests/e2e does, model_repo/ behind the `aifn-models`
claim) is followed to Ready stage by stage, and the `aifn invoke` line it prints classifies real
digits through the gateway; a function asking for a GPU product no node has (or an image no registry
has) waits until `--timeout` and exits 1 naming WaitingForGPUNode (ImagePullBackOff), with the events.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from support.cluster_session import gateway_url

from .conftest import ClusterClient
from .functions import ROOT, delete_namespace, diagnose, example_function, fresh_namespace, model_volume

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
DEPLOY_TIMEOUT = "8m"  # a first Triton start loads torch in the python backend
DIGITS = 5


def aifn(cluster: ClusterClient, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "aifunction_operator", *args, "--kubeconfig", str(cluster.kubeconfig)],
                            capture_output=True, text=True, timeout=timeout)
    print(f"$ aifn {shlex.join(args)}\n{result.stdout}{result.stderr}(exit {result.returncode})")
    return result


def in_order(text: str, *parts: str) -> bool:
    positions = [text.find(part) for part in parts]
    return -1 not in positions and positions == sorted(positions)


def write(tmp_path: Path, body: dict[str, Any]) -> str:
    path = tmp_path / f"{body['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(body))
    return str(path)


def test_deploy_follows_digits_to_ready_and_its_invoke_line_answers(cluster: ClusterClient, tmp_path: Path) -> None:
    namespace = fresh_namespace(cluster, "t-deploy")
    try:
        cluster.apply(*model_volume(namespace))
        function = example_function(ROOT / "examples" / "digits.yaml", namespace)
        function["spec"]["resources"]["cpu"] = "500m"  # room beside Knative on the CPU worker (tests/e2e: FUNCTION_CPU)
        path = write(tmp_path, function)
        deployed = aifn(cluster, "deploy", "-f", path, "-n", namespace, "--timeout", DEPLOY_TIMEOUT, "--gateway", gateway_url())
        assert deployed.returncode == 0, diagnose(cluster, namespace, "digits")
        url = f"http://digits.{namespace}.example.com"
        assert in_order(deployed.stdout, f"aifunction.aifn.dev/digits created in namespace {namespace}", "digits: spec accepted (generation 1)",
                        "digits: Knative feature flags enabled", "digits: revision digits-00001 created",
                        "digits: pod digits-00001-deployment-", "scheduled on aifn-worker", "digits: Triton loading the model",
                        f"digits: Ready at {url}", f"URL:    {url}"), deployed.stdout

        invoke = next(line.split("Invoke: ", 1)[1] for line in deployed.stdout.splitlines() if "Invoke: " in line)
        assert invoke.startswith(f"aifn invoke {url} --gateway "), invoke
        digits = load_digits()
        np.save(tmp_path / "digits.npy", digits.images[:DIGITS].astype(np.float32))
        argv = [sys.executable, "-m", "aifunction_operator", *shlex.split(invoke)[1:], "--output", "json"]
        argv[argv.index("NAME=VALUE")] = f"image={tmp_path / 'digits.npy'}"
        answered = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert answered.returncode == 0, answered.stderr
        labels = [row[0] for row in json.loads(answered.stdout)["label"]["data"]]
        print(f"{invoke}\n  -> labels {labels}")
        assert labels == digits.target[:DIGITS].tolist()

        deleted = aifn(cluster, "delete", "-f", path, "-n", namespace, "--timeout", "3m")
        assert deleted.returncode == 0 and f"{namespace}/digits is gone" in deleted.stdout
        assert cluster.kubectl("get", "ksvc", "digits", "-n", namespace, check=False).returncode != 0
    finally:
        delete_namespace(cluster, namespace)


CANNOT_BECOME_READY = [
    # A GPU product no node has: a wait (a node may come), reported as such when --timeout passes.
    pytest.param({"gpu": {"count": 1, "product": "NVIDIA-B200"}}, {}, ("WaitingForGPUNode",), r"stuck: waiting for a GPU node: WaitingForGPUNode: ",
                 ("FailedScheduling", "default-scheduler"), id="gpu-product-no-node-has"),
    # An image no registry has: Knative says only RevisionMissing until its progress deadline; the pod says why.
    pytest.param({}, {"image": "dev.local/aifn/no-such-image:1"}, ("ImagePullBackOff", "ErrImagePull"),
                 r"stuck: pod stuck-00001-deployment-\S+: triton: (ImagePullBackOff|ErrImagePull): ",
                 ("Failed", "kubelet"), id="image-missing"),
]


@pytest.mark.parametrize(("resources", "runtime", "reasons", "progress", "event"), CANNOT_BECOME_READY)
def test_a_function_that_cannot_become_ready_exits_1_at_the_timeout_naming_why(
        cluster: ClusterClient, tmp_path: Path, resources: dict[str, Any], runtime: dict[str, Any], reasons: tuple[str, ...],
        progress: str, event: tuple[str, str]) -> None:
    namespace = fresh_namespace(cluster, "t-deploy-fail")
    try:
        function = {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": "stuck"},
                    "spec": {"model": {"name": "digits", "repository": "s3://models/triton"}, "runtime": runtime,
                             "resources": {"cpu": "100m", "memory": "256Mi", **resources}, "scaling": {"minReplicas": 0, "maxReplicas": 1}}}
        result = aifn(cluster, "deploy", "-f", write(tmp_path, function), "-n", namespace, "--timeout", "40s")
        assert result.returncode == 1
        assert re.search(progress, result.stdout), result.stdout
        error = result.stderr.splitlines()[0]
        prefix = f"error: {namespace}/stuck is not Ready after --timeout 40s: "
        assert any(error.startswith(prefix + reason + ": ") for reason in reasons), error
        rows = result.stderr.partition("Events:")[2].splitlines()
        assert any(in_order(row, "Warning", *event, "Pod/stuck-00001-deployment-") for row in rows), result.stderr
    finally:
        delete_namespace(cluster, namespace)
