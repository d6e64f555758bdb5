"""The KIngress status the gateway reports (pure): load balancers and Knative's three conditions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

CONDITIONS = ("LoadBalancerReady", "NetworkConfigured", "Ready")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(kind: str, status: str, reason: str = "", message: str = "",
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
    unchanged = previous and previous.get("status") == status
    condition: dict[str, Any] = {"type": kind, "status": status,
                                 "lastTransitionTime": previous["lastTransitionTime"] if unchanged else _now()}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def desired_status(current: dict[str, Any] | None, generation: int, public: str, private: str,
                   problem: str | None) -> dict[str, Any]:
    """Ready (or not, with the problem as the message) at `generation`, served by `public`/`private`.

    `public` and `private` are the cluster DNS names of the gateway's Services: Knative points each
    Route's placeholder Service at `private`, and the conformance suite dials `public`'s node ports.
    """
    previous = {c.get("type"): c for c in (current or {}).get("conditions") or []}
    if problem:
        conditions = [
            _condition("LoadBalancerReady", "Unknown", "Uninitialized", "waiting for the configuration",
                       previous.get("LoadBalancerReady")),
            _condition("NetworkConfigured", "False", "ConfigurationFailed", problem, previous.get("NetworkConfigured")),
            _condition("Ready", "False", "ConfigurationFailed", problem, previous.get("Ready")),
        ]
    else:
        conditions = [_condition(kind, "True", previous=previous.get(kind)) for kind in CONDITIONS]
    return {
        "observedGeneration": generation,
        "conditions": conditions,
        "publicLoadBalancer": {"ingress": [{"domainInternal": public}]},
        "privateLoadBalancer": {"ingress": [{"domainInternal": private}]},
    }


def same_status(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether writing `desired` would change nothing but timestamps."""
    def essence(status: dict[str, Any] | None) -> Any:
        status = status or {}
        conditions = sorted((c.get("type"), c.get("status"), c.get("reason", ""), c.get("message", ""))
                            for c in status.get("conditions") or [])
        return (status.get("observedGeneration"), conditions, status.get("publicLoadBalancer"),
                status.get("privateLoadBalancer"))
    return essence(current) == essence(desired)
