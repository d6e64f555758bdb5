"""Render the Knative Service that runs Triton for one AIFunction (pure, deterministic)."""

from __future__ import annotations

import copy
from typing import Any

from .config import OperatorConfig
from ..constants import KNATIVE_SERVING_API, LABEL_VISIBILITY
from ..spec import AIFunction, FieldError, InvalidSpec, RepositorySource, SourceKind, classify
from ..spec.model import Rollout
from .handler import code_digest_annotation, handler_container, handler_volume
from .metadata import child_metadata, function_labels
from ..triton_command import GRPC_PORT, HTTP_PORT, TritonPorts, triton_args
from .manifest import Manifest


MODEL_MOUNT = "/mnt/models"
SHM_VOLUME = "dshm"
MODEL_VOLUME = "model-store"
CREDENTIALS_VOLUME = "storage-credentials"
CREDENTIALS_MOUNT = "/var/run/secrets/aifn/storage"
GCS_CREDENTIALS_KEY = "gcloud-application-credentials.json"
KPA_CLASS = "kpa.autoscaling.knative.dev"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"


def render_service(fn: AIFunction, config: OperatorConfig) -> Manifest:
    """The Knative Service for `fn`; raises InvalidSpec for what a cluster cannot serve.

    Traffic is Knative's default (all to the latest revision); a canary split needs the function's
    rolled-out revision, which only its status knows: the operator adds it (`with_traffic`).
    """
    source = classify(fn.spec.model.repository)
    assert not isinstance(source, FieldError)  # parse_function already rejected bad URIs
    if source.kind is SourceKind.LOCAL:
        raise InvalidSpec([FieldError("spec.model.repository", f"the local path {source.uri!r} works only with `aifn run`; in a cluster use s3://, gs://, as://, pvc://, http(s)://, hf:// or file:///<path in the image>")])
    labels = function_labels(fn)
    private = {LABEL_VISIBILITY: "cluster-local"} if fn.spec.triggers.http.visibility == "cluster-local" else {}
    metadata = child_metadata(fn, fn.name, private)
    return {
        "apiVersion": KNATIVE_SERVING_API,
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "template": {
                "metadata": {"labels": labels, "annotations": _template_annotations(fn)},
                "spec": _pod_spec(fn, config, source),
            }
        },
    }


STABLE_TAG, CANARY_TAG = "stable", "canary"


def canary_traffic(rollout: Rollout, stable_revision: str | None) -> list[Manifest]:
    """Knative traffic targets: for a canary the rolled-out revision keeps 100 - N percent and the
    latest ready revision gets N (0: a rollback); otherwise Knative's default, all to the latest
    (stated, so that ending a canary removes its split), also before any revision was rolled out:
    a first deployment has nothing to share with.

    `latestRevision: true` follows the latest *ready* revision, so a canary revision that never
    becomes ready receives nothing: its share stays on the rolled-out revision.
    """
    if not rollout.canary or stable_revision is None:
        return [{"latestRevision": True, "percent": 100}]
    percent = rollout.canary_traffic_percent or 0
    stable: Manifest = {"revisionName": stable_revision, "percent": 100 - percent}
    canary: Manifest = {"latestRevision": True, "percent": percent}
    if rollout.tags:
        stable["tag"], canary["tag"] = STABLE_TAG, CANARY_TAG
    return [stable, canary]


def with_traffic(service: Manifest, traffic: list[Manifest]) -> Manifest:
    """The Service with these traffic targets."""
    return {**service, "spec": {**service["spec"], "traffic": traffic}}


MIN_SCALE = "autoscaling.knative.dev/min-scale"  # also written on routed Revisions by scheduled pre-warm


def _template_annotations(fn: AIFunction) -> dict[str, str]:
    scaling = fn.spec.scaling
    prefix = "autoscaling.knative.dev/"
    annotations = {
        prefix + "class": KPA_CLASS,
        prefix + "metric": scaling.metric,
        MIN_SCALE: str(scaling.min_replicas),
        "serving.knative.dev/progress-deadline": f"{scaling.startup_timeout}s",
    }
    target = scaling.target_concurrency if scaling.metric == "concurrency" else scaling.target_requests_per_second
    optional = {
        prefix + "target": target,
        prefix + "max-scale": scaling.max_replicas,
        prefix + "initial-scale": scaling.initial_replicas,
        prefix + "scale-down-delay": None if scaling.scale_down_delay is None else f"{scaling.scale_down_delay}s",
        prefix + "scale-to-zero-pod-retention-period": None if scaling.scale_to_zero_retention is None else f"{scaling.scale_to_zero_retention}s",
    }
    annotations.update({key: str(value) for key, value in optional.items() if value is not None})
    annotations.update(code_digest_annotation(fn))
    return dict(sorted(annotations.items()))


def _pod_spec(fn: AIFunction, config: OperatorConfig, source: RepositorySource) -> Manifest:
    spec = fn.spec
    pod: Manifest = {}
    if spec.scaling.container_concurrency is not None:
        pod["containerConcurrency"] = spec.scaling.container_concurrency
    if spec.timeout_seconds is not None:
        pod["timeoutSeconds"] = spec.timeout_seconds
    if source.kind is SourceKind.INITIALIZER:
        pod["initContainers"] = [_storage_initializer(fn, config, source)]
    triton = _triton_container(fn, config, source, sidecar=spec.handler is not None)
    pod["containers"] = [handler_container(fn, config, _hardened(config.handler_run_as_user)), triton] if spec.handler else [triton]
    pod["volumes"] = _volumes(fn, source)
    pod.update(_placement(fn))
    return pod


def model_repository_path(source: RepositorySource) -> str:
    """What Triton's --model-repository points at inside the pod."""
    if source.kind is SourceKind.DIRECT:
        return source.uri
    if source.kind is SourceKind.IMAGE:
        return source.path
    return MODEL_MOUNT


def _triton_container(fn: AIFunction, config: OperatorConfig, source: RepositorySource, *, sidecar: bool) -> Manifest:
    """Triton: the serving container, or with a handler a probed sidecar without a port."""
    spec = fn.spec
    grpc = spec.runtime.protocol == "grpc"
    container: Manifest = {
        "name": "triton",
        "image": spec.runtime.image or config.triton_image,
        "command": ["tritonserver"],
        "args": triton_args(
            model_repository=model_repository_path(source),
            model_name=spec.model.name,
            ports=TritonPorts(),
            extra_args=spec.runtime.args,
        ),
    }
    if not sidecar:
        container["ports"] = [{"name": "h2c", "containerPort": GRPC_PORT}] if grpc else [{"name": "http1", "containerPort": HTTP_PORT}]
    env = _env(fn, source)
    if env:
        container["env"] = env
    if spec.model.credentials_secret and not _is_gcs(source):
        container["envFrom"] = [{"secretRef": {"name": spec.model.credentials_secret}}]
    resources = _resources(fn)
    if resources:
        container["resources"] = resources
    # A sidecar's probes must name their port (and need Knative's multi-container-probing).
    port = {"port": HTTP_PORT} if sidecar else {}
    container["readinessProbe"] = {"grpc": {"port": GRPC_PORT}} if grpc else {"httpGet": {"path": "/v2/health/ready", **port}}
    if not grpc:
        container["livenessProbe"] = {"httpGet": {"path": "/v2/health/live", **port}, "periodSeconds": 10, "failureThreshold": 6}
    container["volumeMounts"] = _triton_mounts(fn, source)
    container["securityContext"] = _hardened(config.triton_run_as_user)
    return container


def _is_gcs(source: RepositorySource) -> bool:
    return source.uri.startswith("gs://")


def _env(fn: AIFunction, source: RepositorySource) -> list[Manifest]:
    env: list[Manifest] = []
    if fn.spec.model.credentials_secret and _is_gcs(source):
        env.append({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": f"{CREDENTIALS_MOUNT}/{GCS_CREDENTIALS_KEY}"})
    for var in fn.spec.runtime.env:
        item: Manifest = {"name": var.name}
        if var.value is not None:
            item["value"] = var.value
        if var.value_from is not None:
            item["valueFrom"] = var.value_from
        env.append(item)
    return env


def _resources(fn: AIFunction) -> Manifest:
    res = fn.spec.resources
    requests: dict[str, Any] = {}
    limits: dict[str, Any] = {}
    if res.cpu is not None:
        requests["cpu"] = res.cpu
    if res.memory is not None:
        requests["memory"] = res.memory
        limits["memory"] = res.memory
    if res.gpu.count > 0:
        limits[res.gpu.type] = str(res.gpu.count)
    resources: Manifest = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return resources


def _triton_mounts(fn: AIFunction, source: RepositorySource) -> list[Manifest]:
    mounts: list[Manifest] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    if source.kind is SourceKind.INITIALIZER:
        mounts.append({"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True})
    elif source.kind is SourceKind.PVC:
        mount: Manifest = {"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": True}
        if source.sub_path:
            mount["subPath"] = source.sub_path
        mounts.append(mount)
    if fn.spec.model.credentials_secret and _is_gcs(source):
        mounts.append({"name": CREDENTIALS_VOLUME, "mountPath": CREDENTIALS_MOUNT, "readOnly": True})
    return mounts


def _volumes(fn: AIFunction, source: RepositorySource) -> list[Manifest]:
    volumes: list[Manifest] = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": fn.spec.resources.shared_memory}}]
    if source.kind is SourceKind.INITIALIZER:
        volumes.append({"name": MODEL_VOLUME, "emptyDir": {}})
    elif source.kind is SourceKind.PVC:
        volumes.append({"name": MODEL_VOLUME, "persistentVolumeClaim": {"claimName": source.claim, "readOnly": True}})
    if fn.spec.model.credentials_secret and _is_gcs(source):
        volumes.append({"name": CREDENTIALS_VOLUME, "secret": {"secretName": fn.spec.model.credentials_secret}})
    code = handler_volume(fn)
    if code is not None:
        volumes.append(code)
    return volumes


def _storage_initializer(fn: AIFunction, config: OperatorConfig, source: RepositorySource) -> Manifest:
    container: Manifest = {
        "name": "storage-initializer",
        "image": config.storage_initializer_image,
        "args": [source.uri, MODEL_MOUNT],
    }
    if fn.spec.model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": fn.spec.model.credentials_secret}}]
    container["resources"] = {"requests": {"cpu": "100m", "memory": "100Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    container["volumeMounts"] = [{"name": MODEL_VOLUME, "mountPath": MODEL_MOUNT}]
    container["securityContext"] = _hardened(config.triton_run_as_user)
    return container


def _hardened(uid: int) -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _placement(fn: AIFunction) -> Manifest:
    spec = fn.spec
    gpu = spec.resources.gpu
    placement: Manifest = {}
    node_selector = dict(spec.placement.node_selector)
    if gpu.product:
        node_selector[GPU_PRODUCT_LABEL] = gpu.product
    if node_selector:
        placement["nodeSelector"] = dict(sorted(node_selector.items()))
    tolerations = [_toleration(t) for t in spec.placement.tolerations]
    if gpu.count > 0 and not any(t.key == gpu.type for t in spec.placement.tolerations):
        tolerations.append({"key": gpu.type, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        placement["tolerations"] = tolerations
    affinity = with_gpu_products(spec.placement.affinity, gpu.products)
    if affinity is not None:
        placement["affinity"] = affinity
    if spec.placement.runtime_class_name is not None:
        placement["runtimeClassName"] = spec.placement.runtime_class_name
    return placement


def product_weights(count: int) -> list[int]:
    """Node-affinity weights for `count` products in order of preference: 100 for the first, evenly down to at least 1."""
    return [max(1, 100 - (100 * index) // count) for index in range(count)]


def with_gpu_products(affinity: Manifest | None, products: tuple[str, ...]) -> Manifest | None:
    """The user's affinity plus our GPU products: required (the node has one of them) and preferred (in order).

    A required term of the user's is kept and narrowed by ours (terms are ORed, expressions in a
    term ANDed); preferred terms are added after the user's.
    """
    if not products:
        return affinity
    merged = copy.deepcopy(affinity) if affinity else {}
    node = merged.setdefault("nodeAffinity", {})
    wanted = {"key": GPU_PRODUCT_LABEL, "operator": "In", "values": list(products)}
    required = node.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = [{**term, "matchExpressions": [*(term.get("matchExpressions") or []), wanted]} for term in terms]
    preferred = node.setdefault("preferredDuringSchedulingIgnoredDuringExecution", [])
    for product, weight in zip(products, product_weights(len(products)), strict=True):
        preferred.append({"weight": weight, "preference": {"matchExpressions": [{"key": GPU_PRODUCT_LABEL, "operator": "In", "values": [product]}]}})
    return merged


def _toleration(t: Any) -> Manifest:
    fields = {"key": t.key, "operator": t.operator, "value": t.value, "effect": t.effect, "tolerationSeconds": t.toleration_seconds}
    return {key: value for key, value in fields.items() if value is not None}
