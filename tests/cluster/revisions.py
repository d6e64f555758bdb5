"""What Knative does to a Service's template when it makes a Revision's pods, for this tier (no Knative yet)."""

from __future__ import annotations

import json
from typing import Any


def revision_pod_spec(service: dict[str, Any]) -> dict[str, Any]:
    """The Service template's pod spec as Knative's Revision runs it: containers named, probe ports set.

    Knative points a probe without a port at the container's port and drops the fields that are
    the Revision's (containerConcurrency, timeoutSeconds); the rest stays as the renderer wrote it.
    """
    spec = json.loads(json.dumps(service["spec"]["template"]["spec"]))
    for index, container in enumerate(spec["containers"]):
        container.setdefault("name", f"user-container-{index}" if index else "user-container")
        port = next((p["containerPort"] for p in container.get("ports", [])), None)
        for probe_name in ("readinessProbe", "livenessProbe", "startupProbe"):
            for action in ("httpGet", "tcpSocket", "grpc"):
                handler = container.get(probe_name, {}).get(action)
                if handler is not None and not handler.get("port") and port:
                    handler["port"] = port
    spec.pop("containerConcurrency", None)
    spec.pop("timeoutSeconds", None)
    return spec


def revision_labels(service: dict[str, Any]) -> dict[str, str]:
    """The template's labels plus those Knative adds to a Revision's pods."""
    name = service["metadata"]["name"]
    return {**service["spec"]["template"].get("metadata", {}).get("labels", {}),
            "serving.knative.dev/service": name, "serving.knative.dev/revision": f"{name}-00001"}


def revision_pod(service: dict[str, Any], name: str) -> dict[str, Any]:
    """A bare pod of the Service's first Revision."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": revision_labels(service)},
            "spec": revision_pod_spec(service)}
