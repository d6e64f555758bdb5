"""kopf peering: make sure the peering object exists so that replicas see each other.

kopf pauses every replica but the live one with the highest priority; it needs the
`ClusterKopfPeering` (all namespaces) or `KopfPeering` (per namespace) object to exist.
The CRDs are in `crds/kopf-peering.yaml`.
"""

from __future__ import annotations

import getpass
import logging
import os
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .kube_client import CLUSTER_PEERINGS, NAMESPACED_PEERINGS, ApiError, KubeClient

DEFAULT_PEERING = "aifn-operator"
log = logging.getLogger("aifn.operator")


class PeeringUnavailable(RuntimeError):
    """Peering was asked for but kopf's peering CRDs are not installed."""


def ensure_peering(kube: KubeClient, name: str | None, standalone: bool, namespaces: Sequence[str]) -> tuple[str | None, bool]:
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


def _ensure_one(kube: KubeClient, name: str, namespace: str | None) -> None:
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


def own_identity() -> str:
    """This process's name among its peers: the pod name in a cluster, else user@host/start/random."""
    pod = os.environ.get("POD_ID")
    if pod:
        return pod
    started = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"{getpass.getuser()}@{socket.gethostname()}/{started}/{secrets.token_hex(2)}"


@dataclass(frozen=True)
class PeeringGate:
    """Whether this replica is the one kopf lets work, for work the operator starts on its own.

    kopf pauses its watches while a live peer of higher or equal priority exists; the
    operator's own triggers (Knative settings changes, the periodic re-check) ask this first.
    """

    kube: KubeClient | None  # None: standalone, always active
    name: str = ""
    namespaces: tuple[str, ...] = ()
    identity: str = ""
    priority: int = 0

    def active(self, now: datetime | None = None) -> bool:
        if self.kube is None:
            return True
        now = now or datetime.now(UTC)
        for namespace in self.namespaces or (None,):
            resource = NAMESPACED_PEERINGS if namespace else CLUSTER_PEERINGS
            try:
                obj = self.kube.get(resource, namespace, self.name) or {}
            except ApiError as exc:
                log.warning("cannot read peering %r: %s; assuming another replica works", self.name, exc)
                return False
            if not peers_allow(obj.get("status") or {}, self.identity, self.priority, now):
                return False
        return True


def peers_allow(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """kopf's rule: work only while no other live peer has a priority as high as ours."""
    for peer, info in peers.items():
        if peer == identity or not isinstance(info, Mapping):
            continue
        try:
            lastseen = info.get("lastseen")
            seen = now if lastseen is None else datetime.fromisoformat(str(lastseen).replace("Z", "+00:00"))
            alive = seen + timedelta(seconds=int(info.get("lifetime", 60))) > now
        except ValueError:
            continue
        if alive and int(info.get("priority", 0)) >= priority:
            return False
    return True
