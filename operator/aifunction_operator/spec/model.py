"""The typed AIFunction model: frozen dataclasses built from a validated, defaulted spec.

Field names are the CRD's camelCase names in snake_case; `tests/unit/test_crd_sync.py`
checks that every schema field has an attribute here and vice versa.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class SourceKind(str, Enum):
    """How the model repository reaches Triton."""

    DIRECT = "direct"  # s3://, gs://, as:// read by Triton itself
    PVC = "pvc"  # pvc://<claim>/<path>, mounted read-only
    INITIALIZER = "initializer"  # fetched by KServe's storage initializer into /mnt/models
    IMAGE = "image"  # file:///path inside the image
    LOCAL = "local"  # a path on this machine, `aifn run` only


@dataclass(frozen=True)
class RepositorySource:
    """Where the model repository is, classified once for the renderer and the local runtime."""

    kind: SourceKind
    uri: str
    claim: str | None = None  # pvc only
    sub_path: str = ""  # pvc only
    path: str = ""  # image and local


@dataclass(frozen=True)
class Model:
    name: str
    repository: str
    version: int | None = None
    credentials_secret: str | None = None


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str | None = None
    value_from: dict[str, Any] | None = None


@dataclass(frozen=True)
class Runtime:
    image: str | None = None
    protocol: str = "http"
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()


@dataclass(frozen=True)
class GPU:
    count: int = 0
    type: str = "nvidia.com/gpu"
    product: str | None = None
    products: tuple[str, ...] = ()  # acceptable products, most preferred first

    @property
    def acceptable_products(self) -> tuple[str, ...]:
        """Every product the pods may run on (empty: any)."""
        return self.products or ((self.product,) if self.product else ())


@dataclass(frozen=True)
class Resources:
    gpu: GPU = GPU()
    cpu: str | None = None
    memory: str | None = None
    shared_memory: str = "1Gi"


@dataclass(frozen=True)
class Toleration:
    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None


@dataclass(frozen=True)
class Placement:
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    affinity: dict[str, Any] | None = None
    runtime_class_name: str | None = None


@dataclass(frozen=True)
class PrewarmSchedule:
    """A recurring window with at least `min_replicas` warm replicas, requested `lead_time` seconds before it starts."""

    name: str
    cron: str
    duration: int  # seconds
    min_replicas: int
    timezone: str | None = None
    lead_time: int = 300  # seconds


@dataclass(frozen=True)
class Scaling:
    min_replicas: int = 0
    max_replicas: int | None = None
    metric: str = "concurrency"
    target_concurrency: int | None = None
    target_requests_per_second: int | None = None
    container_concurrency: int | None = None
    initial_replicas: int | None = None
    scale_down_delay: int | None = None  # seconds
    scale_to_zero_retention: int | None = None  # seconds
    startup_timeout: int = 900  # seconds
    schedules: tuple[PrewarmSchedule, ...] = ()  # scheduled pre-warm windows


@dataclass(frozen=True)
class HTTPTrigger:
    visibility: str = "external"


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    timezone: str | None = None
    data: str | None = None
    content_type: str = "application/json"


@dataclass(frozen=True)
class EventFilter:
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventTrigger:
    name: str
    broker: str = "default"
    filter: EventFilter = EventFilter()


@dataclass(frozen=True)
class Triggers:
    http: HTTPTrigger = HTTPTrigger()
    schedules: tuple[Schedule, ...] = ()
    events: tuple[EventTrigger, ...] = ()


@dataclass(frozen=True)
class ConfigMapKey:
    name: str
    key: str


@dataclass(frozen=True)
class Handler:
    """Python code in front of the model; `entrypoint` is module:function or module:Class."""

    entrypoint: str
    code: str | None = None
    config_map: ConfigMapKey | None = None
    image: str | None = None
    cpu: str | None = None
    memory: str | None = None

    @property
    def module(self) -> str:
        return self.entrypoint.partition(":")[0]


@dataclass(frozen=True)
class Rollout:
    """How a spec change reaches traffic: all at once, or a canary share for the new revision."""

    canary_traffic_percent: int | None = None  # None or 100: all traffic to the latest revision
    tags: bool = False  # per-revision URLs: stable-<name> and canary-<name>

    @property
    def canary(self) -> bool:
        """Whether traffic is split (or rolled back: 0) rather than all on the latest revision."""
        return self.canary_traffic_percent is not None and self.canary_traffic_percent < 100


@dataclass(frozen=True)
class AIFunctionSpec:
    model: Model
    runtime: Runtime = Runtime()
    resources: Resources = Resources()
    placement: Placement = Placement()
    scaling: Scaling = Scaling()
    handler: Handler | None = None
    triggers: Triggers = Triggers()
    timeout_seconds: int | None = None
    rollout: Rollout = Rollout()


@dataclass(frozen=True)
class AIFunction:
    """A parsed AIFunction: identity from metadata plus the validated spec."""

    name: str
    namespace: str
    spec: AIFunctionSpec
    uid: str | None = None
    generation: int | None = None
    annotations: dict[str, str] = field(default_factory=dict)
