"""The `cluster` tier: a real cluster on this machine (support.cluster), started once for the tier.

A cluster already running (`make cluster` in another shell) is reused and left running; otherwise
the tier starts one and removes it after its last test (package scope), so the other tiers do not
share the machine with it. Where the host cannot run one (not root, a
package or kernel feature missing) the tier is skipped with the reason, except in CI (CI=true),
where that is a failure: CI must run this tier.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.cluster import Cluster, ClusterRunning, HostProblem
from support.cluster.layout import KUBECONFIG, NODES
from support.controlplane import BIN

pytestmark = pytest.mark.cluster


class ClusterClient:
    """kubectl against the cluster, plus the waits the tests share."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(self, *manifests: dict[str, Any]) -> None:
        self.kubectl("apply", "--server-side", "--field-manager=aifn-tests", "-f", "-",
                     input="\n---\n".join(json.dumps(m) for m in manifests))

    def get(self, *args: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def wait_for(self, what: str, probe: Callable[[], Any], timeout: float = 120.0,
                 diagnose: Callable[[], str] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            if time.monotonic() > deadline:
                detail = diagnose() if diagnose else ""
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{detail}")
            time.sleep(0.5)

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get("pod", name, "-n", namespace)

    def describe(self, namespace: str, kind_name: str) -> str:
        return self.kubectl("describe", kind_name, "-n", namespace, check=False).stdout[-4000:]

    def wait_pod_phase(self, namespace: str, name: str, phases: tuple[str, ...] = ("Running",),
                       timeout: float = 120.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            return pod if pod.get("status", {}).get("phase") in phases else None

        return self.wait_for(f"pod {namespace}/{name} {'/'.join(phases)}", probe, timeout,
                             lambda: self.describe(namespace, f"pod/{name}"))

    def wait_pod_ready(self, namespace: str, name: str, timeout: float = 180.0) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            conditions = pod.get("status", {}).get("conditions", [])
            return pod if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions) else None

        return self.wait_for(f"pod {namespace}/{name} Ready", probe, timeout,
                             lambda: self.describe(namespace, f"pod/{name}"))


def _running_cluster() -> ClusterClient | None:
    """A client for a cluster that is already up (kubeconfig present, both nodes Ready), else None."""
    if not KUBECONFIG.exists():
        return None
    client = ClusterClient(KUBECONFIG)
    try:
        nodes = client.get("nodes")["items"]
    except (AssertionError, subprocess.TimeoutExpired, json.JSONDecodeError):
        return None
    ready = {n["metadata"]["name"] for n in nodes
             if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"].get("conditions", []))}
    return client if ready >= {node.name for node in NODES} else None


@pytest.fixture(scope="package")
def cluster() -> Iterator[ClusterClient]:
    """The cluster: reused when running, else started for this tier and removed after it."""
    running = _running_cluster()
    if running is not None:
        yield running
        return
    lines: list[str] = []
    local = Cluster(log=lines.append)
    try:
        local.start()
    except (HostProblem, ClusterRunning) as problem:
        local.stop()
        if os.environ.get("CI"):
            pytest.fail(f"the cluster tier must run in CI, but: {problem}")
        pytest.skip(f"no local cluster on this host: {problem}")
    except BaseException:
        logs = local.logs()
        local.stop()
        print("\n".join(lines), logs, sep="\n")
        raise
    print("\n".join(lines))
    try:
        yield ClusterClient(local.kubeconfig)
    finally:
        dead = local.dead_components()
        if dead:
            print(f"cluster components that died during the session: {dead}\n{local.logs()}")
        local.stop()


@pytest.fixture
def namespace(cluster: ClusterClient) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods need the default ServiceAccount, created by the controller manager.
    cluster.wait_for(f"ServiceAccount {name}/default",
                     lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 30)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
