"""A test-side client (the official `kubernetes` library, independent of the operator's apply.py).

Includes `mark_service_ready`, which does what Knative's controller would do to a Service's
status: no Knative controller runs on the test control plane.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client, config

GROUP, VERSION, PLURAL = "aifn.dev", "v1alpha1", "aifunctions"
KS_GROUP, KS_VERSION, KS_PLURAL = "serving.knative.dev", "v1", "services"


def function(name: str, spec: dict[str, Any] | None = None, namespace: str | None = None) -> dict[str, Any]:
    """An AIFunction body; by default a CPU function whose repository Triton reads from S3."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "AIFunction",
        "metadata": meta,
        "spec": spec or {"model": {"name": "digits", "repository": "s3://models/triton"}, "scaling": {"minReplicas": 0, "maxReplicas": 3}},
    }


class TestClient:
    """Thin helpers over CustomObjectsApi and CoreV1Api for one kubeconfig."""

    __test__ = False  # not a test class

    def __init__(self, kubeconfig: Path, pool_size: int = 32) -> None:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = pool_size
        self.api = client.ApiClient(configuration)
        self.custom = client.CustomObjectsApi(self.api)
        self.core = client.CoreV1Api(self.api)

    # AIFunctions
    def create_function(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)

    def get_function(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))

    def patch_function(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)

    def delete_function(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    def list_functions(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]

    # Knative Services
    def get_service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get(lambda: self.custom.get_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, KS_PLURAL, name))

    def list_services(self, namespace: str) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, KS_PLURAL)["items"]

    def patch_service(self, namespace: str, name: str, patch: Any) -> dict[str, Any]:
        """A merge patch (dict) or a JSON patch (list of operations), as `kubectl patch` sends them."""
        kind = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        return self.custom.patch_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, KS_PLURAL, name, patch, _content_type=kind)

    def delete_service(self, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(KS_GROUP, KS_VERSION, namespace, KS_PLURAL, name)

    def mark_service_ready(self, namespace: str, name: str, ready: str = "True", revision: int = 1,
                           traffic: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Write the status Knative's controller writes once a revision serves (simulated: no Knative runs here).

        `revision` is the latest created and ready one; `traffic` what the Route reports (default: all to it).
        """
        svc = self.get_service(namespace, name)
        assert svc is not None, f"Knative Service {namespace}/{name} does not exist"
        latest = f"{name}-{revision:05d}"
        status = {
            "observedGeneration": svc["metadata"]["generation"],
            "url": f"http://{name}.{namespace}.example.com",
            "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
            "latestCreatedRevisionName": latest,
            "latestReadyRevisionName": latest,
            "traffic": traffic if traffic is not None else [{"revisionName": latest, "latestRevision": True, "percent": 100}],
            "conditions": [
                {"type": "ConfigurationsReady", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "RoutesReady", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
        }
        return self.custom.patch_namespaced_custom_object_status(KS_GROUP, KS_VERSION, namespace, KS_PLURAL, name, {"status": status})

    # Core
    def events_for(self, namespace: str, name: str) -> list[Any]:
        return [e for e in self.core.list_namespaced_event(namespace).items if e.involved_object.name == name]

    def put_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, namespace=namespace), data=data)
        try:
            self.core.replace_namespaced_config_map(name, namespace, body)
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(namespace, body)

    @staticmethod
    def _get(call: Any) -> dict[str, Any] | None:
        try:
            return call()
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """A condition of an object's status, or {}."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return item
    return {}
