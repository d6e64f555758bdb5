"""What `make cluster` installs on the nodes: Knative Serving configured as the README says, the
networking layer with its address in .aifn/cluster/gateway, a Knative Service answering there, and
Knative Eventing (its workloads up on the CPU worker, Brokers defaulting to the MT channel broker).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from support.cluster import eventing, gateway, knative
from support.cluster.cluster import BUSYBOX_IMAGE
from support.cluster.stack import GATEWAY_FILE, revision_image
from support.cluster_session import gateway_url

from .conftest import ClusterClient

pytestmark = [pytest.mark.cluster]


def test_knative_runs_configured_as_the_readme_says(cluster: ClusterClient) -> None:
    deployments = cluster.get("deployments", "-n", knative.NAMESPACE)["items"]
    available = {d["metadata"]["name"] for d in deployments
                 if any(c["type"] == "Available" and c["status"] == "True" for c in d["status"].get("conditions", []))}
    assert available >= {"controller", "webhook", "autoscaler", "activator"}
    for configmap, data in knative.cluster_settings(gateway.INGRESS_CLASS).items():
        live = cluster.get("configmap", configmap, "-n", knative.NAMESPACE).get("data") or {}
        assert {key: live.get(key) for key in data} == data, configmap


def test_eventing_runs_on_the_cpu_worker_with_the_brokers_the_examples_need(cluster: ClusterClient) -> None:
    workloads = eventing.deployments(eventing.manifests())
    live = {(d["kind"], d["metadata"]["name"]): d for kind in ("deployments", "statefulsets")
            for d in cluster.get(kind, "-n", eventing.NAMESPACE)["items"]}
    assert set(live) == set(workloads), sorted(set(live) ^ set(workloads))
    for (kind, name), workload in live.items():
        if name != "pingsource-mt-adapter":  # 0 replicas until a PingSource exists
            assert workload["status"].get("readyReplicas", 0) == workload["spec"].get("replicas", 1), (kind, name)
        requests = [c.get("resources", {}).get("requests", {}).get("cpu")
                    for c in workload["spec"]["template"]["spec"]["containers"]]
        assert set(requests) <= {None, eventing.LOCAL_CPU_REQUEST}, (name, requests)
    pods = cluster.get("pods", "-n", eventing.NAMESPACE)["items"]
    assert {p["spec"]["nodeName"] for p in pods if p["status"].get("phase") == "Running"} == {"aifn-worker"}
    for configmap, data in eventing.cluster_settings().items():
        live_data = cluster.get("configmap", configmap, "-n", eventing.NAMESPACE).get("data") or {}
        assert {key: live_data.get(key) for key in data} == data, configmap


def test_the_gateway_address_is_written_for_the_host(cluster: ClusterClient) -> None:
    assert GATEWAY_FILE.read_text().strip() == gateway.gateway_url() == gateway_url()


def test_a_knative_service_answers_through_the_gateway(cluster: ClusterClient, namespace: str) -> None:
    service = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "hello", "namespace": namespace},
        "spec": {"template": {"spec": {"containers": [{
            "image": revision_image(BUSYBOX_IMAGE),
            "command": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/"],
            "ports": [{"containerPort": 8080}],
        }]}}},
    }
    cluster.apply(service)
    ready = cluster.wait_for("the Knative Service Ready", lambda: next(
        (s for s in [cluster.get("ksvc", "hello", "-n", namespace)]
         if any(c["type"] == "Ready" and c["status"] == "True" for c in s.get("status", {}).get("conditions", []))),
        None), 180, lambda: cluster.describe(namespace, "ksvc/hello"))
    assert ready["status"]["url"] == f"http://hello.{namespace}.{knative.CLUSTER_DOMAIN}"
    kingress = cluster.get("kingress", "hello", "-n", namespace)
    assert kingress["metadata"]["annotations"]["networking.knative.dev/ingress.class"] == gateway.INGRESS_CLASS
    assert kingress["status"]["privateLoadBalancer"]["ingress"][0]["domainInternal"] == gateway.PRIVATE_SERVICE

    request = urllib.request.Request(f"{gateway_url()}/bin/busybox", method="HEAD",
                                     headers={"Host": f"hello.{namespace}.{knative.CLUSTER_DOMAIN}"})
    started = time.monotonic()
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    print(f"\nthrough the gateway in {time.monotonic() - started:.3f}s")
    unknown = urllib.request.Request(gateway_url(), headers={"Host": f"nobody.{namespace}.example.com"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unknown, timeout=10)
    assert refused.value.code == 404
    print(json.dumps(kingress["status"]["conditions"], indent=1))
