"""The handler container and the ConfigMap holding inline handler code (pure)."""

from __future__ import annotations

import hashlib
from typing import Any

from .config import OperatorConfig
from ..spec import AIFunction
from ..spec.model import Handler
from .metadata import child_metadata, child_name
from ..triton_command import HTTP_PORT

HANDLER_PORT = 8080
HANDLER_MOUNT = "/opt/aifn/handler"
HANDLER_VOLUME = "handler-code"
DEFAULT_HANDLER_CPU = "100m"
DEFAULT_HANDLER_MEMORY = "256Mi"
# The handler container's memory limit when spec.handler.memory is not set: twice the default
# request. The runtime (kserve, FastAPI, numpy, the model client) idles at about 160 MiB RSS and
# peaked at 360 MiB with four 15 MB bodies in flight (docs/handlers.md, "In the cluster").
DEFAULT_HANDLER_MEMORY_LIMIT = "512Mi"


def handler_config_map_name(fn: AIFunction) -> str:
    """Name of the ConfigMap the operator creates for inline code: `<fn>-handler-<hash>`."""
    return child_name(fn.name, "handler")


def module_file(handler: Handler) -> tuple[str, str]:
    """(ConfigMap key, path under the mount) for the entrypoint's module."""
    return f"{handler.module}.py", handler.module.replace(".", "/") + ".py"


def render_config_map(fn: AIFunction) -> dict[str, Any] | None:
    """The ConfigMap for inline code, or None when the code comes from elsewhere."""
    handler = fn.spec.handler
    if handler is None or handler.code is None:
        return None
    key, _ = module_file(handler)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": child_metadata(fn, handler_config_map_name(fn)), "data": {key: handler.code}}


CODE_DIGEST_ANNOTATION = "aifn.dev/handler-code-sha256"


def code_digest_annotation(fn: AIFunction) -> dict[str, str]:
    """The inline code's digest, for the revision template: a code change is a template change, so
    Knative rolls out a new Revision (the ConfigMap alone changes in place, which running pods,
    having loaded the code at start, would never notice)."""
    handler = fn.spec.handler
    if handler is None or handler.code is None:
        return {}
    return {CODE_DIGEST_ANNOTATION: hashlib.sha256(handler.code.encode()).hexdigest()[:16]}


def handler_volume(fn: AIFunction) -> dict[str, Any] | None:
    """The configMap volume carrying the code, None when the code is baked into the image."""
    handler = fn.spec.handler
    if handler is None or (handler.code is None and handler.config_map is None):
        return None
    _, path = module_file(handler)
    if handler.config_map is not None:
        name, key = handler.config_map.name, handler.config_map.key
    else:
        name, key = handler_config_map_name(fn), module_file(handler)[0]
    return {"name": HANDLER_VOLUME, "configMap": {"name": name, "items": [{"key": key, "path": path}]}}


def handler_resources(handler: Handler) -> dict[str, Any]:
    """Requests for the handler container and a memory limit: spec.handler.memory (request and
    limit, as for Triton), else 256Mi requested and 512Mi at most, so that a leak or an
    oversized request in user code ends that container, not the node's other pods."""
    return {
        "requests": {"cpu": handler.cpu or DEFAULT_HANDLER_CPU, "memory": handler.memory or DEFAULT_HANDLER_MEMORY},
        "limits": {"memory": handler.memory or DEFAULT_HANDLER_MEMORY_LIMIT},
    }


def handler_container(fn: AIFunction, config: OperatorConfig, hardened: dict[str, Any]) -> dict[str, Any]:
    """The serving container: the user's code in our runtime, calling Triton on localhost."""
    handler = fn.spec.handler
    assert handler is not None
    env = [
        {"name": "AIFN_FUNCTION_NAME", "value": fn.name},
        {"name": "AIFN_HANDLER_ENTRYPOINT", "value": handler.entrypoint},
        {"name": "AIFN_HANDLER_PATH", "value": HANDLER_MOUNT},
        {"name": "AIFN_MODEL_NAME", "value": fn.spec.model.name},
        {"name": "AIFN_TRITON_URL", "value": f"127.0.0.1:{HTTP_PORT}"},
    ]
    if fn.spec.model.version is not None:
        env.append({"name": "AIFN_MODEL_VERSION", "value": str(fn.spec.model.version)})
    if fn.spec.timeout_seconds is not None:  # unset: Knative's default, 300 s, which is the runtime's too
        env.append({"name": "AIFN_REQUEST_TIMEOUT_SECONDS", "value": str(fn.spec.timeout_seconds)})
    container: dict[str, Any] = {
        "name": "handler",
        "image": handler.image or config.handler_image,
        "command": ["python", "-m", "aifunction_operator.handler"],
        "ports": [{"name": "http1", "containerPort": HANDLER_PORT}],
        "env": env,
        "resources": handler_resources(handler),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready"}},
    }
    if handler_volume(fn) is not None:
        container["volumeMounts"] = [{"name": HANDLER_VOLUME, "mountPath": HANDLER_MOUNT, "readOnly": True}]
    container["securityContext"] = hardened
    return container
