"""The local cluster of one test session: reused when `make cluster` runs, else started with the whole stack.

The `cluster` tier (tests/cluster) and the e2e suite on this cluster (tests/e2e, provider `local`)
share one cluster: Knative Serving, the networking layer and the operator (support.cluster.stack).
A cluster already running (`make cluster` in another shell) is reused and left running; otherwise
the session starts one at the first test that needs it and removes it after the last (root
conftest), so the other tiers do not share the machine with it. Where the host cannot run one
(not root, a package or kernel feature missing) the tests are skipped with the reason, except in
CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, ClusterRunning, HostProblem
from .cluster.layout import KUBECONFIG, NODES
from .cluster.stack import GATEWAY_FILE
from .controlplane import BIN
from .processes import wait_until


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
        """`wait_until` (support.processes), polling every 0.5 s as suits kubectl."""
        return wait_until(what, probe, timeout, interval=0.5, diagnose=diagnose)

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


def running_cluster() -> ClusterClient | None:
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


class SessionCluster:
    """The session's cluster: started on first use (unless one runs), stopped by `close()`."""

    def __init__(self) -> None:
        self.client: ClusterClient | None = None
        self.started: Cluster | None = None
        self.failure: str | None = None

    def get(self) -> ClusterClient:
        if self.failure:
            pytest.skip(self.failure) if not os.environ.get("CI") else pytest.fail(self.failure)
        if self.client is not None:
            return self.client
        running = running_cluster()
        if running is not None:
            self.client = running
            return running
        lines: list[str] = []
        local = Cluster(log=lines.append, stack=True)
        try:
            local.start()
        except (HostProblem, ClusterRunning) as problem:
            local.stop()
            self.failure = f"no local cluster on this host: {problem}"
            if os.environ.get("CI"):
                pytest.fail(f"the cluster tests must run in CI, but: {problem}")
            pytest.skip(self.failure)
        except BaseException:
            logs = local.logs()
            local.stop()
            print("\n".join(lines), logs, sep="\n")
            self.failure = "the local cluster failed to start (see the first cluster test's output)"
            raise
        print("\n".join(lines))
        self.started = local
        self.client = ClusterClient(local.kubeconfig)
        return self.client

    def close(self) -> None:
        """Stop the cluster this session started (a reused one stays)."""
        if self.started is None:
            return
        dead = self.started.dead_components()
        if dead:
            print(f"cluster components that died during the session: {dead}\n{self.started.logs()}")
        self.started.stop()
        self.started = None
        self.client = None


def gateway_url() -> str:
    """The networking layer's address on the host, as `make cluster` wrote it."""
    if not GATEWAY_FILE.exists():
        raise AssertionError(f"{GATEWAY_FILE} is missing: the cluster runs without its stack (hack/cluster.py --no-stack?)")
    return GATEWAY_FILE.read_text().strip()
