"""Pre-flight: which Knative feature flags a rendered Service needs, and which of them are off (pure).

Knative's webhook rejects a Service that uses a PodSpec field whose `config-features` flag is
off with an error far from the cause. We read the same ConfigMaps and say which key to set.
Defaults and the "Allowed is not enough" rule follow Knative Serving 1.15-1.23
(`pkg/apis/config/features.go`, `pkg/apis/serving/k8s_validation.go`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..render.manifest import Manifest

FEATURES_CONFIGMAP = "config-features"
AUTOSCALER_CONFIGMAP = "config-autoscaler"


@dataclass(frozen=True)
class KnativeSettings:
    """Knative's `config-features` and `config-autoscaler` data; None when a ConfigMap is absent
    (state.py follows them with a watch)."""

    features: Mapping[str, str] | None = None
    autoscaler: Mapping[str, str] | None = None

    @property
    def known(self) -> bool:
        return self.features is not None or self.autoscaler is not None




@dataclass(frozen=True)
class Flag:
    """One `config-features` key and what it gates."""

    key: str
    default: str  # "enabled" | "allowed" | "disabled"
    exact: bool  # True: only "enabled" passes the webhook; False: "allowed" passes too


@dataclass(frozen=True)
class Requirement:
    """A flag the Service needs, and the pod field that needs it."""

    flag: Flag
    field: str


@dataclass(frozen=True)
class Blocker:
    """A cluster setting that stops the function from being served as specified."""

    configmap: str
    key: str
    value: str  # the value to set
    reason: str  # the field or setting that needs it

    def message(self, namespace: str) -> str:
        """Tell the operator of the cluster exactly what to change."""
        return f"{self.reason}: set `{self.key}: \"{self.value}\"` in ConfigMap {namespace}/{self.configmap}"


def _flag(key: str, default: str = "disabled", exact: bool = False) -> Flag:
    return Flag(key, default, exact)


MULTI_CONTAINER = _flag("multi-container", "enabled", exact=True)
MULTI_CONTAINER_PROBING = _flag("multi-container-probing", exact=True)
INIT_CONTAINERS = _flag("kubernetes.podspec-init-containers", exact=True)
EMPTY_DIR = _flag("kubernetes.podspec-volumes-emptydir", "enabled", exact=True)
PVC = _flag("kubernetes.podspec-persistent-volume-claim", exact=True)
PVC_WRITE = _flag("kubernetes.podspec-persistent-volume-write", exact=True)
HOST_PATH = _flag("kubernetes.podspec-volumes-hostpath", exact=True)
CSI = _flag("kubernetes.podspec-volumes-csi", exact=True)
FIELD_REF = _flag("kubernetes.podspec-fieldref")
ADD_CAPABILITIES = _flag("kubernetes.containerspec-addcapabilities", exact=True)

# Pod-level fields gated only by Knative's field mask: "allowed" is enough.
POD_FIELD_FLAGS = {
    "nodeSelector": _flag("kubernetes.podspec-nodeselector"),
    "tolerations": _flag("kubernetes.podspec-tolerations"),
    "affinity": _flag("kubernetes.podspec-affinity"),
    "topologySpreadConstraints": _flag("kubernetes.podspec-topologyspreadconstraints"),
    "runtimeClassName": _flag("kubernetes.podspec-runtimeclassname"),
    "securityContext": _flag("kubernetes.podspec-securitycontext"),
    "priorityClassName": _flag("kubernetes.podspec-priorityclassname"),
    "schedulerName": _flag("kubernetes.podspec-schedulername"),
    "hostAliases": _flag("kubernetes.podspec-hostaliases"),
    "dnsPolicy": _flag("kubernetes.podspec-dnspolicy"),
    "dnsConfig": _flag("kubernetes.podspec-dnsconfig"),
    "shareProcessNamespace": _flag("kubernetes.podspec-shareprocessnamespace"),
}

VOLUME_FLAGS = {"emptyDir": EMPTY_DIR, "persistentVolumeClaim": PVC, "hostPath": HOST_PATH, "csi": CSI}
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")


def required_flags(service: Manifest) -> list[Requirement]:
    """Every feature flag the Service's pod template needs, in a stable order."""
    pod = service.get("spec", {}).get("template", {}).get("spec", {})
    base = "spec.template.spec"
    found: list[Requirement] = []
    for field, flag in POD_FIELD_FLAGS.items():
        if pod.get(field):
            found.append(Requirement(flag, f"{base}.{field}"))
    containers = pod.get("containers") or []
    if len(containers) > 1:
        found.append(Requirement(MULTI_CONTAINER, f"{base}.containers"))
        for i, container in enumerate(containers):
            if not container.get("ports") and any(container.get(p) for p in PROBES):
                found.append(Requirement(MULTI_CONTAINER_PROBING, f"{base}.containers[{i}] probes"))
    if pod.get("initContainers"):
        found.append(Requirement(INIT_CONTAINERS, f"{base}.initContainers"))
    for i, volume in enumerate(pod.get("volumes") or []):
        for kind, flag in VOLUME_FLAGS.items():
            if kind in volume:
                found.append(Requirement(flag, f"{base}.volumes[{i}].{kind}"))
        claim = volume.get("persistentVolumeClaim")
        if claim is not None and not claim.get("readOnly"):
            found.append(Requirement(PVC_WRITE, f"{base}.volumes[{i}].persistentVolumeClaim (writable)"))
    for kind in ("initContainers", "containers"):
        for i, container in enumerate(pod.get(kind) or []):
            found += _container_requirements(container, f"{base}.{kind}[{i}]")
    return _unique(found)


def _container_requirements(container: Manifest, path: str) -> list[Requirement]:
    found: list[Requirement] = []
    for j, env in enumerate(container.get("env") or []):
        source = env.get("valueFrom") or {}
        if "fieldRef" in source or "resourceFieldRef" in source:
            found.append(Requirement(FIELD_REF, f"{path}.env[{j}].valueFrom"))
    if ((container.get("securityContext") or {}).get("capabilities") or {}).get("add"):
        found.append(Requirement(ADD_CAPABILITIES, f"{path}.securityContext.capabilities.add"))
    return found


def _unique(requirements: list[Requirement]) -> list[Requirement]:
    seen: set[str] = set()
    unique: list[Requirement] = []
    for req in requirements:
        if req.flag.key not in seen:
            seen.add(req.flag.key)
            unique.append(req)
    return unique


def flag_value(flag: Flag, features: Mapping[str, str]) -> str:
    """The flag's effective value: the ConfigMap's if it is a known value, else the default."""
    value = str(features.get(flag.key, "")).strip().lower()
    return value if value in ("enabled", "allowed", "disabled") else flag.default


def is_on(flag: Flag, features: Mapping[str, str]) -> bool:
    """Whether the webhook would accept a field gated by `flag`."""
    value = flag_value(flag, features)
    return value == "enabled" or (value == "allowed" and not flag.exact)


def find_blockers(service: Manifest, features: Mapping[str, str], autoscaler: Mapping[str, str]) -> list[Blocker]:
    """Every cluster setting that stops `service` from being accepted or served as rendered."""
    blockers = [
        Blocker(FEATURES_CONFIGMAP, req.flag.key, "enabled", f"{req.field} needs Knative feature {req.flag.key}")
        for req in required_flags(service)
        if not is_on(req.flag, features)
    ]
    return blockers + _autoscaler_blockers(service, autoscaler)


def _autoscaler_blockers(service: Manifest, autoscaler: Mapping[str, str]) -> list[Blocker]:
    annotations = service.get("spec", {}).get("template", {}).get("metadata", {}).get("annotations") or {}
    found: list[Blocker] = []
    scale_to_zero = _truthy(autoscaler.get("enable-scale-to-zero"), default=True)
    if annotations.get("autoscaling.knative.dev/min-scale") == "0" and not scale_to_zero:
        found.append(Blocker(AUTOSCALER_CONFIGMAP, "enable-scale-to-zero", "true", "minReplicas 0 needs scale to zero, which is disabled cluster-wide"))
    zero_initial = _truthy(autoscaler.get("allow-zero-initial-scale"), default=False)
    if annotations.get("autoscaling.knative.dev/initial-scale") == "0" and not zero_initial:
        found.append(Blocker(AUTOSCALER_CONFIGMAP, "allow-zero-initial-scale", "true", "initialReplicas 0 is not allowed by the cluster"))
    return found


def _truthy(value: object, *, default: bool) -> bool:
    if value is None:
        return default
    text = str(value).strip().lower()
    return default if text not in ("true", "false") else text == "true"

