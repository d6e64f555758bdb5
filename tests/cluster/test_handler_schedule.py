"""Schedules on the cluster: examples/handlers/digits-canary fired by Knative Eventing's PingSource adapter.

The example's schedule (`*/5 * * * *`, timezone Europe/Berlin, JSON data) becomes `* * * * *` here
so that two firings fit in a test; the timezone stays (the Eventing images carry a time-zone
database for it, docs/eventing.md).

Each firing is recorded where an operator looks: the function's log (`canary passed: {...}` from
canary.py at INFO, with the ping's time) and its metric `aifn_handler_requests_total{function=
"digits-canary",status="200"}` on the handler's /metrics.

The last test removes Knative Eventing (its objects, then its CRDs) and checks that the function
reports `TriggersReady=False` with reason `EventingNotInstalled`, then installs Eventing again
and checks that the function's PingSource comes back and `TriggersReady` is True.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from support.cluster import stack

from .conftest import ClusterClient
from .functions import (HANDLER_EXAMPLES, code_config_map, condition, delete_namespace, diagnose, example_function,
                        fresh_namespace, handler_logs, handler_ready, model_volume)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

EXAMPLE = HANDLER_EXAMPLES / "digits-canary"
NAME = "digits-canary"
CRON = "* * * * *"
READY_TIMEOUT = 300.0
FIRINGS_TIMEOUT = 240.0  # two minute boundaries, the first after a cold start
PASSED = re.compile(r"canary passed: .*'scheduledAt': '([^']+)'")


@pytest.fixture(scope="module")
def canary(cluster: ClusterClient) -> Iterator[str]:
    handler_ready(cluster)
    namespace = fresh_namespace(cluster, "schedule")
    try:
        function = example_function(EXAMPLE / "digits-canary.yaml", namespace)
        schedule = function["spec"]["triggers"]["schedules"][0]
        assert schedule["timezone"] == "Europe/Berlin"
        schedule.update(name="every-minute", cron=CRON)
        cluster.apply(*model_volume(namespace), code_config_map(function, (EXAMPLE / "canary.py").read_text()),
                      function)
        cluster.wait_for(f"AIFunction {namespace}/{NAME} Ready", lambda: ready(cluster, namespace), READY_TIMEOUT,
                         lambda: diagnose(cluster, namespace, NAME))
        yield namespace
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        delete_namespace(cluster, namespace)


def ready(cluster: ClusterClient, namespace: str) -> dict[str, Any] | None:
    live = cluster.get("aifunction", NAME, "-n", namespace)
    return live if condition(live, "Ready").get("status") == "True" else None


def owned_ping_sources(cluster: ClusterClient, namespace: str) -> list[dict[str, Any]]:
    return [p for p in cluster.get("pingsources", "-n", namespace)["items"]
            if any(ref.get("kind") == "AIFunction" for ref in p["metadata"].get("ownerReferences", []))]


def handler_metric(cluster: ClusterClient, namespace: str, status: str) -> float:
    """aifn_handler_requests_total{function=NAME,status=...} summed over the function's running pods."""
    total = 0.0
    pods = cluster.get("pods", "-n", namespace, "-l", f"serving.knative.dev/service={NAME}")["items"]
    line = re.compile(rf'^aifn_handler_requests_total\{{function="{NAME}",status="{status}"\}} (\S+)$', re.M)
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if not ip or pod["metadata"].get("deletionTimestamp"):
            continue
        with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=10) as response:
            total += sum(float(v) for v in line.findall(response.read().decode()))
    return total


def test_the_schedule_fires_and_each_firing_is_logged_and_counted(cluster: ClusterClient, canary: str) -> None:
    namespace = canary
    # Eventing scales its shared PingSource adapter (one Deployment for all PingSources) to zero when none
    # exists and back up for the first; while it starts, or restarts, every PingSource reports
    # MinimumReplicasUnavailable and the function's TriggersReady follows. That is Eventing's state, not a
    # fault of the function, so the test waits for it (CI saw it False seconds after Ready was True).
    cluster.wait_for("pingsource-mt-adapter running", lambda: cluster.get(
        "deployment", "pingsource-mt-adapter", "-n", "knative-eventing")["status"].get("readyReplicas") == 1, 180)

    def triggers_ready() -> dict[str, Any] | None:
        triggers = condition(cluster.get("aifunction", NAME, "-n", namespace), "TriggersReady")
        return triggers if (triggers.get("status"), triggers.get("reason")) == ("True", "TriggersReady") else None

    cluster.wait_for("TriggersReady True", triggers_ready, 180, lambda: diagnose(cluster, namespace, NAME))
    sources = owned_ping_sources(cluster, namespace)
    assert len(sources) == 1, sources
    source = sources[0]
    assert source["spec"]["schedule"] == CRON and source["spec"]["timezone"] == "Europe/Berlin"
    assert condition(source, "Ready").get("status") == "True", source["status"]
    # Eventing sends to the Knative Service's cluster-local address, whatever the function's public URL.
    assert source["status"]["sinkUri"] == f"http://{NAME}.{namespace}.svc.cluster.local", source["status"]

    seen: dict[str, float] = {}  # ping time -> when the test saw it logged (pods may come and go between firings)
    counted = 0.0

    def two_firings() -> bool:
        nonlocal counted
        for match in PASSED.finditer(handler_logs(cluster, namespace, NAME)):
            if match.group(1) not in seen:
                seen[match.group(1)] = time.monotonic()
                counted = max(counted, handler_metric(cluster, namespace, "200"))
        return len(seen) >= 2

    cluster.wait_for("two firings of the schedule logged", two_firings, FIRINGS_TIMEOUT,
                     lambda: f"seen {seen}\n" + diagnose(cluster, namespace, NAME))
    times = sorted(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in seen)
    gap = (times[1] - times[0]).total_seconds()
    assert 55 <= gap <= 65, f"firings at {times}: `{CRON}` fires once a minute"
    assert counted >= 1, "the handler's aifn_handler_requests_total{status=200} did not count the firing"
    print(f"\n{NAME}: firings at {[t.isoformat() for t in times]}; aifn_handler_requests_total{{status=200}} "
          f"= {counted:g} on the pod serving them")


def test_without_eventing_the_function_reports_eventing_not_installed(cluster: ClusterClient, canary: str) -> None:
    namespace = canary
    began = time.monotonic()
    try:
        stack.remove_eventing(cluster.kubectl)
        removed = time.monotonic() - began

        def not_installed() -> dict[str, Any] | None:
            triggers = condition(cluster.get("aifunction", NAME, "-n", namespace), "TriggersReady")
            return triggers if triggers.get("reason") == "EventingNotInstalled" else None

        triggers = cluster.wait_for("TriggersReady reason EventingNotInstalled", not_installed, 180,
                                    lambda: diagnose(cluster, namespace, NAME))
        assert triggers["status"] == "False" and "sources.knative.dev" in triggers["message"], triggers
        function = cluster.get("aifunction", NAME, "-n", namespace)
        assert condition(function, "Ready").get("status") == "False", function["status"]["conditions"]
        reported = time.monotonic() - began
    finally:
        stack.install_eventing(cluster.kubectl, print)
    cluster.wait_for("the function Ready again once Eventing is back", lambda: ready(cluster, namespace), 300,
                     lambda: diagnose(cluster, namespace, NAME))
    assert len(owned_ping_sources(cluster, namespace)) == 1
    print(f"\nEventing removed in {removed:.0f}s; EventingNotInstalled reported {reported - removed:.0f}s later; "
          f"Ready again {time.monotonic() - began:.0f}s after the removal began")
