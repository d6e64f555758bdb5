"""kopf peering: make sure the peering object exists so that replicas see each other.

kopf pauses every replica but the live one with the highest priority; it needs the
`ClusterKopfPeering` (all namespaces) or `KopfPeering` (per namespace) object to exist.
The CRDs are in `crds/kopf-peering.yaml`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from .apply import CLUSTER_PEERINGS, NAMESPACED_PEERINGS, ApiError, Kube

DEFAULT_PEERING = "aifn-operator"
log = logging.getLogger("aifn.operator")


class PeeringUnavailable(RuntimeError):
    """Peering was asked for but kopf's peering CRDs are not installed."""


def ensure_peering(kube: Kube, name: str | None, standalone: bool, namespaces: Sequence[str]) -> tuple[str | None, bool]:
    """(peering name, standalone) for kopf; creates the peering object(s) when missing.

    Without an explicit name, a cluster lacking kopf's CRDs gets a standalone operator and a warning.
    """
    if standalone:
        return None, True
    target = name or DEFAULT_PEERING
    try:
        for namespace in namespaces or [None]:
            _ensure_one(kube, target, namespace)
    except PeeringUnavailable as exc:
        if name:
            raise
        log.warning("%s; running standalone: run only one replica", exc)
        return None, True
    return target, False


def _ensure_one(kube: Kube, name: str, namespace: str | None) -> None:
    resource = NAMESPACED_PEERINGS if namespace else CLUSTER_PEERINGS
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    if kube.get(resource, namespace, name) is not None:
        return
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    try:
        kube.create(resource, namespace, {"apiVersion": resource.api_version, "kind": kind, "metadata": metadata})
    except ApiError as exc:
        if exc.status == 409:  # another replica created it first
            return
        if exc.status == 404:
            raise PeeringUnavailable(f"kopf's {kind} CRD is not installed (crds/kopf-peering.yaml)") from None
        if exc.status == 403:
            raise PeeringUnavailable(f"{kind} {name!r} does not exist and the operator may not create it: {exc.message}") from None
        raise
