"""Canary rollout and rollback on the real cluster (spec.rollout): Knative routes the split the
operator asks for, through aifn-ingress (Envoy), and the function's status follows.

The function is the digits model behind an inline Lambda-style handler that answers with
`K_REVISION`, the Revision Knative runs it in, so each answer says which revision served it.
Revision 1 is rolled out; a spec change (Triton's environment) with `canaryTrafficPercent: 20` and
`tags: true` makes revision 2 the canary: a few hundred requests split about 80/20 (checked within 4.5 standard
deviations of a binomial draw), each tag's own host reaches only its revision, `0` rolls back
(all to revision 1, revision 2 kept), and removing the field promotes revision 2.
"""

from __future__ import annotations

import http.client
import json
import math
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import pytest

from support.cluster.stack import GATEWAY_FILE

from .conftest import ClusterClient
from .functions import condition, diagnose, handler_ready, model_volume

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

NAME = "canary"
CODE = '''import json, os

CODE_VERSION = 1


def lambda_handler(event, context):
    return {"statusCode": 200, "body": json.dumps({"revision": os.environ.get("K_REVISION"), "code": CODE_VERSION})}
'''
REQUESTS = 300
READY_TIMEOUT = 300.0


def function(namespace: str, version: int, rollout: dict[str, Any] | None, code: str = CODE) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "model": {"name": "digits", "repository": "pvc://aifn-models"},
        "runtime": {"env": [{"name": "AIFN_TEST_VERSION", "value": str(version)}]},
        "handler": {"entrypoint": "handler:lambda_handler", "code": code, "cpu": "50m"},
        "resources": {"cpu": "200m", "memory": "2Gi", "sharedMemory": "256Mi"},  # two revisions fit beside Knative on the CPU worker
        "scaling": {"minReplicas": 1, "maxReplicas": 1, "startupTimeout": "5m"},
        "timeoutSeconds": 30,
    }
    if rollout is not None:
        spec["rollout"] = rollout
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": NAME, "namespace": namespace}, "spec": spec}


def ask(gateway: str, host: str, field: str = "revision") -> str:
    """POST / with Host `host`; the revision that answered (or another field of the answer)."""
    url = urlparse(gateway)
    connection = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
    try:
        connection.request("POST", "/", body=b"{}", headers={"Host": host, "Content-Type": "application/json"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 200, (host, response.status, body[:300])
    return str(json.loads(body)[field])


def rollout_where(cluster: ClusterClient, namespace: str, what: str, check: Any) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        fn = cluster.get("aifunction", NAME, "-n", namespace)
        rollout = (fn.get("status") or {}).get("rollout") or {}
        return fn if condition(fn, "Ready").get("status") == "True" and check(rollout) else None

    return cluster.wait_for(f"AIFunction {namespace}/{NAME}: {what}", probe, READY_TIMEOUT, lambda: diagnose(cluster, namespace, NAME))


def settled(gateway: str, host: str, expected: set[str], tries: int = 60) -> None:
    """Wait until the gateway routes `host` only to `expected` revisions (the route's change reaches Envoy a moment later)."""
    for _ in range(tries):
        if {ask(gateway, host) for _ in range(10)} <= expected:
            return
    raise AssertionError(f"{host} still reaches revisions other than {expected}")


def test_canary_split_rollback_and_promotion(cluster: ClusterClient, namespace: str) -> None:
    handler_ready(cluster)
    gateway = GATEWAY_FILE.read_text().strip()
    volume = model_volume(namespace)
    first, second = f"{NAME}-00001", f"{NAME}-00002"
    try:
        cluster.apply(*volume)
        cluster.apply(function(namespace, 1, None))
        fn = rollout_where(cluster, namespace, f"{first} rolled out", lambda r: r.get("stableRevision") == first)
        host = urlparse(fn["status"]["url"]).hostname or ""
        settled(gateway, host, {first})

        # A spec change with a 20% canary: revision 2 gets about a fifth of the requests.
        cluster.apply(function(namespace, 2, {"canaryTrafficPercent": 20, "tags": True}))
        fn = rollout_where(cluster, namespace, f"{second} Ready as a 20% canary",
                           lambda r: r.get("canaryReady") is True and r.get("split") == f"{first} 80%, {second} 20%")
        assert fn["status"]["rollout"]["stableRevision"] == first and fn["status"]["rollout"]["canaryTrafficPercent"] == 20
        tags = {t.get("tag"): t for t in fn["status"]["rollout"]["traffic"]}
        assert tags["stable"]["revisionName"] == first and tags["canary"]["revisionName"] == second, tags
        settled(gateway, host, {first, second})
        counts = Counter(ask(gateway, host) for _ in range(REQUESTS))
        share = counts[second] / REQUESTS
        tolerance = 4.5 * math.sqrt(0.2 * 0.8 / REQUESTS)
        print(f"\ncanary 20%: {dict(counts)} over {REQUESTS} requests: {share:.3f} to {second} (tolerance +-{tolerance:.3f})")
        assert set(counts) == {first, second} and abs(share - 0.2) <= tolerance, counts
        for tag, revision in (("stable", first), ("canary", second)):
            tag_host = urlparse(tags[tag]["url"]).hostname or ""
            settled(gateway, tag_host, {revision})
            assert {ask(gateway, tag_host) for _ in range(20)} == {revision}, tag

        # 0 rolls back: everything to revision 1, revision 2 kept.
        cluster.apply(function(namespace, 2, {"canaryTrafficPercent": 0}))
        rollout_where(cluster, namespace, "rolled back", lambda r: r.get("split") == f"{first} 100%, {second} 0%")
        settled(gateway, host, {first})
        assert Counter(ask(gateway, host) for _ in range(50)) == Counter({first: 50})
        assert cluster.get("revision", second, "-n", namespace)["metadata"]["name"] == second, "a rollback keeps the canary revision"

        # No rollout field: revision 2 is promoted and becomes the rolled-out one.
        cluster.apply(function(namespace, 2, None))
        rollout_where(cluster, namespace, f"{second} promoted", lambda r: r.get("stableRevision") == second and r.get("split") == f"{second} 100%")
        settled(gateway, host, {second})
        assert Counter(ask(gateway, host) for _ in range(50)) == Counter({second: 50})

        # A change of the handler's code alone is a new revision too, which then answers with the new code.
        third = f"{NAME}-00003"
        cluster.apply(function(namespace, 2, None, code=CODE.replace("CODE_VERSION = 1", "CODE_VERSION = 2")))
        rollout_where(cluster, namespace, f"{third} rolled out", lambda r: r.get("stableRevision") == third)
        settled(gateway, host, {third})
        assert {ask(gateway, host, "code") for _ in range(20)} == {"2"}
    finally:
        cluster.kubectl("delete", "aifunction", NAME, "-n", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        cluster.kubectl("delete", "pv", volume[0]["metadata"]["name"], "--wait=false", check=False)
