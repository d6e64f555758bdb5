"""The AIFunction v1alpha1 OpenAPI schema: the one source of truth for fields, bounds and defaults.

`crds/aifunctions.aifn.dev.yaml` is generated from this module (`aifn crd`), and the Python
parser validates against the same schema, so the CRD and the spec model cannot drift apart.
Cross-field rules live in CROSS_FIELD_RULES: the CEL text goes into the CRD and
`spec.rules` implements each one in Python with the same message.
"""

from __future__ import annotations

from typing import Any

DURATION_PATTERN = r"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"
DNS_LABEL_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# A tritonserver restriction flag that names a group aifn already refuses (triton_command.py),
# or the flag without `=` (its value would be the next argument): Triton would exit at start.
RESTRICTION_ARG_PATTERN = r"^--(http-restricted-api|grpc-restricted-protocol)(=[^:]*(model-repository|shared-memory|trace|logging).*)?$"
LABEL_VALUE_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"  # a non-empty label value
RESOURCE_NAME_PATTERN = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"


def _str(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _int(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def _obj(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _duration(description: str, *, max_seconds: int, min_seconds: int = 0, **extra: Any) -> dict[str, Any]:
    schema = _str(description + " A Go-style duration in whole seconds, e.g. 90s, 5m, 1h.", pattern=DURATION_PATTERN, minLength=2, maxLength=16, **extra)
    rule = f"duration(self) >= duration('{min_seconds}s') && duration(self) <= duration('{max_seconds}s')"
    schema["x-kubernetes-validations"] = [{"rule": rule, "message": f"must be between {min_seconds}s and {max_seconds}s"}]
    return schema


def _quantity(description: str, **extra: Any) -> dict[str, Any]:
    return {
        "description": description + " A Kubernetes quantity, e.g. 500m, 2, 4Gi.",
        "x-kubernetes-int-or-string": True,
        "pattern": QUANTITY_PATTERN,
        **extra,
    }


_SECRET_KEY_REF = _obj(
    "A key of a Secret or ConfigMap in the function's namespace.",
    {"name": _str("Object name.", maxLength=253), "key": _str("Key in the object.", maxLength=253), "optional": {"type": "boolean", "description": "Tolerate a missing object or key."}},
    required=["name", "key"],
)

ENV_VAR = _obj(
    "An environment variable for the Triton container: a literal value or a reference.",
    {
        "name": _str("Variable name.", pattern=ENV_NAME_PATTERN, maxLength=256),
        "value": _str("Literal value."),
        "valueFrom": _obj(
            "Take the value from a Secret or ConfigMap key (credentials are never inlined).",
            {"secretKeyRef": _SECRET_KEY_REF, "configMapKeyRef": _SECRET_KEY_REF},
        ),
    },
    required=["name"],
)

TOLERATION = _obj(
    "A Kubernetes toleration.",
    {
        "key": _str("Taint key; empty with operator Exists tolerates everything.", maxLength=316),
        "operator": _str("Exists or Equal.", enum=["Exists", "Equal"]),
        "value": _str("Taint value (operator Equal).", maxLength=63),
        "effect": _str("Taint effect; empty matches all.", enum=["NoSchedule", "PreferNoSchedule", "NoExecute"]),
        "tolerationSeconds": _int("How long a NoExecute taint is tolerated.", minimum=0),
    },
)

MODEL = _obj(
    "The model Triton serves and where its repository lives.",
    {
        "name": _str("The Triton model to load (a directory of the repository). Defaults to metadata.name.", pattern=MODEL_NAME_PATTERN, maxLength=128),
        "repository": _str(
            "Triton model repository URI. s3://, gs://, as:// are read by Triton itself; pvc://<claim>/<path> is mounted "
            "read-only; http(s)://, hf://, hdfs://, webhdfs://, modelscope:// are fetched by KServe's storage initializer "
            "into /mnt/models; file:///<path> is a path inside the image; a relative path works with `aifn run` only.",
            minLength=1,
            maxLength=2048,
        ),
        "version": _int("Model version to address (Triton's version policy still decides what is loaded).", minimum=1),
        "credentialsSecret": _str("Secret, in the function's namespace, holding the storage credentials; injected by reference.", pattern=DNS_LABEL_PATTERN.replace("[a-z]", "[a-z0-9]", 1), maxLength=253),
    },
    required=["repository"],
)

RUNTIME = _obj(
    "The Triton container.",
    {
        "image": _str("Triton image; defaults to the operator's configured NGC image (python backend + torch).", maxLength=512),
        "protocol": _str("The one protocol Knative routes: http (port 8000, http1) or grpc (port 8001, h2c).", enum=["http", "grpc"], default="http"),
        "args": {"type": "array", "description": "Extra tritonserver arguments.", "items": {"type": "string", "maxLength": 1024}, "maxItems": 64},
        "env": {"type": "array", "description": "Extra environment variables (names unique: Kubernetes keys them by name).",
                "items": ENV_VAR, "maxItems": 128, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    },
)

RESOURCES = _obj(
    "Compute for one replica.",
    {
        "gpu": _obj(
            "GPUs per replica.",
            {
                "count": _int("GPUs per replica; 0 runs on CPU.", minimum=0, maximum=16, default=0),
                "type": _str("Extended resource name of the GPU.", pattern=RESOURCE_NAME_PATTERN, maxLength=253, default="nvidia.com/gpu"),
                "product": _str("GPU product, becomes the node selector nvidia.com/gpu.product (e.g. NVIDIA-A100-SXM4-80GB).", maxLength=63),
                "products": {
                    "type": "array",
                    "description": ("Acceptable GPU products, most preferred first (instead of product): the pods run on a node whose "
                                    "nvidia.com/gpu.product is one of them, preferring earlier ones (node affinity)."),
                    "items": _str("A GPU product (a nvidia.com/gpu.product label value).", maxLength=63, pattern=LABEL_VALUE_PATTERN),
                    "minItems": 1,
                    "maxItems": 8,
                    "x-kubernetes-list-type": "set",
                },
            },
        ),
        "cpu": _quantity("CPU request."),
        "memory": _quantity("Memory request and limit."),
        "sharedMemory": _quantity("Size of the memory-backed /dev/shm that Triton's python backend needs.", default="1Gi"),
    },
)

PLACEMENT = _obj(
    "Where replicas may run. Each field needs its Knative feature flag (see README).",
    {
        "nodeSelector": {"type": "object", "description": "Node labels a node must have.", "additionalProperties": {"type": "string", "maxLength": 63}},
        "tolerations": {"type": "array", "description": "Tolerations; with GPUs, nvidia.com/gpu NoSchedule is tolerated by default.", "items": TOLERATION, "maxItems": 32},
        "affinity": {"type": "object", "description": "A Kubernetes pod affinity object, passed through.", "x-kubernetes-preserve-unknown-fields": True},
        "runtimeClassName": _str("RuntimeClass, e.g. nvidia.", pattern=DNS_LABEL_PATTERN.replace("[a-z]", "[a-z0-9]", 1), maxLength=253),
    },
)

CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|hourly)|(\S+\s+){4}\S+)$"
SHORT_NAME_PATTERN = DNS_LABEL_PATTERN

PREWARM_SCHEDULE = _obj(
    "A recurring window in which replicas are kept warm (scheduled pre-warm), e.g. weekday mornings. "
    "The replicas are requested leadTime before each window starts and released when it ends; no new revision is created.",
    {
        "name": _str("Name, unique among the function's pre-warm schedules.", pattern=SHORT_NAME_PATTERN, maxLength=40),
        "cron": _str("When each window starts: five fields (minute hour day-of-month month day-of-week) or @daily, @hourly, ...",
                     pattern=CRON_PATTERN, maxLength=128),
        "timezone": _str("IANA time zone of the cron expression, e.g. Europe/Berlin; default UTC.", maxLength=64),
        "duration": _duration("How long each window lasts, from 1m to 24h.", min_seconds=60, max_seconds=86400),
        "minReplicas": _int("Replicas kept ready during the window (the higher of this and spec.scaling.minReplicas).", minimum=1, maximum=1000),
        "leadTime": _duration("How long before each window starts its replicas are requested, to cover the cold start; at most 1h.",
                              max_seconds=3600, default="5m"),
    },
    required=["name", "cron", "duration", "minReplicas"],
)

SCALING = _obj(
    "Serverless scaling (Knative KPA).",
    {
        "minReplicas": _int("Replicas kept warm; 0 scales to zero.", minimum=0, maximum=1000, default=0),
        "maxReplicas": _int("Upper bound on replicas; unset means unbounded.", minimum=1, maximum=1000),
        "metric": _str("What the autoscaler tracks.", enum=["concurrency", "rps"], default="concurrency"),
        "targetConcurrency": _int("In-flight requests per replica the autoscaler aims for (metric concurrency).", minimum=1, maximum=1000),
        "targetRequestsPerSecond": _int("Requests per second per replica the autoscaler aims for (metric rps).", minimum=1, maximum=100000),
        "containerConcurrency": _int("Hard limit of in-flight requests per replica; 0 is unlimited.", minimum=0, maximum=1000),
        "initialReplicas": _int("Replicas started when the function is created; 0 needs allow-zero-initial-scale.", minimum=0, maximum=1000),
        "scaleDownDelay": _duration("Wait before scaling down, at most 1h.", max_seconds=3600),
        "scaleToZeroRetention": _duration("Minimum time the last replica stays after the decision to scale to zero, at most 1h.", max_seconds=3600),
        "startupTimeout": _duration("How long a replica may take to become ready (GPU cold starts are slow), at most 24h.", min_seconds=1, max_seconds=86400, default="15m"),
        "schedules": {"type": "array", "description": "Scheduled pre-warm: windows in which at least minReplicas replicas are kept warm.",
                      "items": PREWARM_SCHEDULE, "maxItems": 16, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    },
)

# Inline code fits twice in the API server's 256 KiB of annotations (kubectl apply's copy and
# the operator's): 123,234 characters of real handler code were measured to fit, with nothing
# else in the function; 112 KiB leaves room for the rest. spec.annotation_budget is the exact check.
INLINE_CODE_MAX_CHARS = 112 * 1024
ENTRYPOINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$"
HANDLER = _obj(
    "Python code in front of the model: Lambda style (module:function taking event, context) or KServe style "
    "(module:Class with preprocess/postprocess). The code comes from code, configMap, or is baked into image.",
    {
        "entrypoint": _str("module:function or module:Class.", pattern=ENTRYPOINT_PATTERN, maxLength=256),
        "code": _str("Inline Python source of the entrypoint's module; stored in a ConfigMap the operator owns. At most 112 KiB: "
                     "kubectl apply and the operator each keep a copy of the function in annotations, capped at 256 KiB in total.",
                     maxLength=INLINE_CODE_MAX_CHARS),
        "configMap": _obj(
            "A key of an existing ConfigMap holding the module's source.",
            {"name": _str("ConfigMap name.", maxLength=253), "key": _str("Key holding the source.", maxLength=253)},
            required=["name", "key"],
        ),
        "image": _str("Handler runtime image; defaults to the operator's. Holds the code when neither code nor configMap is set.", maxLength=512),
        "cpu": _quantity("CPU request of the handler container (default 100m); give high-rate functions at least 1."),
        "memory": _quantity("Memory request and limit of the handler container (default: request 256Mi, limit 512Mi)."),
    },
    required=["entrypoint"],
)

SCHEDULE = _obj(
    "Invoke the function on a schedule (a Knative PingSource).",
    {
        "name": _str("Name, unique among the function's schedules.", pattern=SHORT_NAME_PATTERN, maxLength=40),
        "cron": _str("Cron schedule, five fields or @hourly/@daily/...", pattern=CRON_PATTERN, maxLength=128),
        "timezone": _str("IANA time zone of the schedule, e.g. Europe/Paris; default UTC.", maxLength=64),
        "data": _str("Event payload.", maxLength=65536),
        "contentType": _str("Media type of data.", maxLength=128, default="application/json"),
    },
    required=["name", "cron"],
)

EVENT = _obj(
    "Invoke the function on CloudEvents from a Knative Eventing Broker (a Trigger).",
    {
        "name": _str("Name, unique among the function's event triggers.", pattern=SHORT_NAME_PATTERN, maxLength=40),
        "broker": _str("Broker in the function's namespace.", maxLength=253, default="default"),
        "filter": _obj(
            "Which events are delivered.",
            {"attributes": {"type": "object", "description": "Exact matches on CloudEvent attributes, e.g. type.", "additionalProperties": {"type": "string", "maxLength": 256}}},
        ),
    },
    required=["name"],
)

TRIGGERS = _obj(
    "How the function is invoked.",
    {
        "http": _obj(
            "HTTP exposure.",
            {"visibility": _str("external (through the ingress) or cluster-local.", enum=["external", "cluster-local"], default="external")},
        ),
        "schedules": {"type": "array", "description": "Schedules (need a handler).", "items": SCHEDULE, "maxItems": 16,
                      "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        "events": {"type": "array", "description": "CloudEvent subscriptions (need a handler).", "items": EVENT, "maxItems": 16,
                   "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    },
)

ROLLOUT = _obj(
    "How a spec change reaches traffic (KServe's canaryTrafficPercent semantics).",
    {
        "canaryTrafficPercent": _int(
            "Share of traffic for the revision a spec change creates; the last fully rolled-out revision keeps the rest. "
            "Unset or 100 promotes the latest revision; 0 rolls back to the rolled-out one without deleting the new revision.",
            minimum=0, maximum=100),
        "tags": {"type": "boolean", "description": "Give both revisions their own URL while a canary runs (Knative traffic tags stable and canary).",
                 "default": False},
    },
)

SPEC = _obj(
    "The desired state of an AIFunction.",
    {
        "model": MODEL,
        "runtime": RUNTIME,
        "resources": RESOURCES,
        "placement": PLACEMENT,
        "scaling": SCALING,
        "handler": HANDLER,
        "triggers": TRIGGERS,
        "timeoutSeconds": _int("Request timeout; the cluster's max-revision-timeout-seconds (default 600) bounds it.", minimum=1, maximum=3600),
        "rollout": ROLLOUT,
    },
    required=["model"],
)

CROSS_FIELD_RULES: list[tuple[str, str, str]] = [
    ("", "has(self.handler) || !has(self.triggers) || ((!has(self.triggers.schedules) || size(self.triggers.schedules) == 0) && (!has(self.triggers.events) || size(self.triggers.events) == 0))",
     "spec.triggers.schedules and spec.triggers.events need spec.handler (Triton does not read CloudEvents)"),
    ("", "!has(self.handler) || !has(self.runtime) || !has(self.runtime.protocol) || self.runtime.protocol == 'http'",
     "spec.runtime.protocol grpc cannot be combined with spec.handler (the handler serves HTTP)"),
    ("runtime", "!has(self.args) || self.args.all(a, !a.matches('" + RESTRICTION_ARG_PATTERN + "'))",
     "spec.runtime.args must not restrict Triton's model-repository, shared-memory, trace or logging APIs (aifn refuses them to every caller)"),
    ("handler", "!(has(self.code) && has(self.configMap))",
     "spec.handler.code and spec.handler.configMap are exclusive"),
    # (path of the object the rule sits on, CEL rule, message shared with spec.rules)
    ("scaling", "!has(self.maxReplicas) || !has(self.minReplicas) || self.maxReplicas >= self.minReplicas",
     "spec.scaling.maxReplicas must be >= spec.scaling.minReplicas"),
    ("scaling", "!has(self.initialReplicas) || !has(self.maxReplicas) || self.initialReplicas <= self.maxReplicas",
     "spec.scaling.initialReplicas must be <= spec.scaling.maxReplicas"),
    ("scaling", "!has(self.targetConcurrency) || !has(self.containerConcurrency) || self.containerConcurrency == 0 || self.targetConcurrency <= self.containerConcurrency",
     "spec.scaling.targetConcurrency must be <= spec.scaling.containerConcurrency"),
    ("scaling", "!has(self.targetRequestsPerSecond) || (has(self.metric) && self.metric == 'rps')",
     "spec.scaling.targetRequestsPerSecond needs spec.scaling.metric rps"),
    ("scaling", "!has(self.targetConcurrency) || !has(self.metric) || self.metric == 'concurrency'",
     "spec.scaling.targetConcurrency needs spec.scaling.metric concurrency"),
    ("scaling", "!has(self.maxReplicas) || !has(self.schedules) || self.schedules.all(s, s.minReplicas <= self.maxReplicas)",
     "spec.scaling.schedules[].minReplicas must be <= spec.scaling.maxReplicas"),
    ("resources.gpu", "!has(self.product) || (has(self.count) && self.count > 0)",
     "spec.resources.gpu.product needs spec.resources.gpu.count > 0"),
    ("resources.gpu", "!has(self.products) || (has(self.count) && self.count > 0)",
     "spec.resources.gpu.products needs spec.resources.gpu.count > 0"),
    ("resources.gpu", "!(has(self.product) && has(self.products))",
     "spec.resources.gpu.product and spec.resources.gpu.products are exclusive"),
    ("model", "self.repository.matches('^(s3|gs|as|pvc|http|https|hf|hdfs|webhdfs|modelscope|file)://.+$') || !self.repository.contains('://')",
     "spec.model.repository must use s3, gs, as, pvc, http, https, hf, hdfs, webhdfs, modelscope or file, or be a local path"),
    ("model", "!has(self.credentialsSecret) || !self.repository.startsWith('pvc://')",
     "spec.model.credentialsSecret does not apply to pvc:// repositories"),
]

METADATA_RULE = {
    "rule": "self.metadata.name.size() <= 57 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
    "message": "metadata.name must be a DNS-1035 label of at most 57 characters (Knative names revisions <name>-00001)",
}

PREWARM_WINDOW = _obj(
    "One window of a pre-warm schedule (times in UTC).",
    {
        "name": _str("The schedule."),
        "warmFrom": _str("When its replicas are requested (start - leadTime).", format="date-time"),
        "start": _str("When the window starts.", format="date-time"),
        "end": _str("When the window ends and its replicas are released.", format="date-time"),
        "minReplicas": _int("Replicas kept ready during the window."),
    },
)

STATUS = _obj(
    "The observed state, written by the operator.",
    {
        "observedGeneration": _int("The generation the status describes."),
        "url": _str("Where the function is served (the Knative Service URL)."),
        "address": _str("Cluster-internal URL."),
        "latestReadyRevision": _str("The Knative Revision serving traffic."),
        "gpuProduct": _str("The GPU product (nvidia.com/gpu.product) of the node a running pod of the function landed on."),
        "rollout": _obj(
            "Revisions and traffic (spec.rollout).",
            {
                "stableRevision": _str("The last fully rolled-out Revision: it keeps the traffic a canary does not get."),
                "latestRevision": _str("The latest Revision Knative created (the canary while one runs)."),
                "canaryTrafficPercent": _int("The canary's share while one runs."),
                "canaryReady": {"type": "boolean", "description": "Whether the canary Revision is Ready (a canary that is not receives no traffic)."},
                "traffic": {"type": "array", "description": "The traffic split Knative routes.", "items": _obj("A traffic target.", {
                    "revisionName": _str("The Revision."), "percent": _int("Its share."), "tag": _str("Its traffic tag."),
                    "url": _str("The tag's own URL.")})},
                "split": _str("The split in one line, for kubectl get."),
            },
        ),
        "prewarm": _obj(
            "Scheduled pre-warm (spec.scaling.schedules): the replicas kept warm now, and why.",
            {
                "minReplicas": _int("The floor the routed Revisions have now: spec.scaling.minReplicas or the highest window warming or open."),
                "windows": {"type": "array", "description": "The windows warming or open now.", "items": PREWARM_WINDOW},
                "next": PREWARM_WINDOW,
                "problem": _str("Why the Revisions' min-scale could not be read or written (e.g. missing RBAC on revisions)."),
            },
        ),
        "reason": _str("Short reason for the Ready condition, shown by kubectl get."),
        "conditions": {
            "type": "array",
            "description": "Ready aggregates SpecValid, KnativeFeaturesReady, ServiceReady and TriggersReady; PodsScheduled explains a wait for a node.",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
            "items": _obj(
                "A condition.",
                {
                    "type": _str("Condition type."),
                    "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
                    "reason": _str("CamelCase reason."),
                    "message": _str("Human-readable detail."),
                    "lastTransitionTime": _str("When status last changed.", format="date-time"),
                    "observedGeneration": _int("Generation the condition was computed for."),
                },
                required=["type", "status"],
            ),
        },
    },
)


def spec_schema() -> dict[str, Any]:
    """The spec schema with the CEL rules attached where they belong."""
    import copy

    schema = copy.deepcopy(SPEC)
    for path, rule, message in CROSS_FIELD_RULES:
        node = schema
        for part in path.split(".") if path else ():
            node = node["properties"][part]
        node.setdefault("x-kubernetes-validations", []).append({"rule": rule, "message": message})
    return schema


def duration_rules() -> dict[str, tuple[int, int]]:
    """CEL rule text -> (minimum, maximum) seconds, for every duration field."""
    rules: dict[str, tuple[int, int]] = {}

    def walk(node: dict[str, Any]) -> None:
        for sub in [*node.get("properties", {}).values(), *([node["items"]] if "items" in node else [])]:
            for validation in sub.get("x-kubernetes-validations", ()):
                if validation["rule"].startswith("duration(self)"):
                    low, high = (int(part.split("')")[0].rstrip("s")) for part in validation["rule"].split("duration('")[1:])
                    rules[validation["rule"]] = (low, high)
            walk(sub)

    walk(SPEC)
    return rules
