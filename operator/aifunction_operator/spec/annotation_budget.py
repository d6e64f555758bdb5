"""Will the function's annotations fit once kubectl and the operator have stored their copies of it?

The API server caps an object's annotations at 262144 bytes in total. Two of them copy the
function: `kubectl apply` (client-side, as the README says to apply) stores the applied object
as Go JSON in `kubectl.kubernetes.io/last-applied-configuration`, and the operator's kopf
stores the spec (with defaults), labels and annotations as JSON in
`aifn.dev/last-handled-configuration`. A function whose copies do not fit is still created,
but the operator can never record that it handled it. Measured with kube-apiserver 1.35 and
kopf 1.45 (tests/integration/test_crd.py): realistic inline code of 123,234 characters fits
with kubectl apply, 123,271 does not; with server-side apply about twice that fits.

For a document from a file the kubectl copy is assumed; for an object read from the API
server (it has a uid) its real annotations are counted, kubectl's copy only if present.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import FieldError
from .metadata import TOTAL_ANNOTATION_BYTES, annotation_bytes

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
LAST_HANDLED = "aifn.dev/last-handled-configuration"
KOPF_MARKER = ("aifn.dev/kopf-managed", "yes")
PROGRESS_RESERVE = 1024  # kopf's per-handler progress annotations while a handler retries


def annotation_budget_errors(obj: Mapping[str, Any], spec: Mapping[str, Any]) -> list[FieldError]:
    """An error naming the biggest contributor when the annotations would exceed the API server's cap."""
    metadata = obj.get("metadata") or {}
    annotations: dict[str, str] = dict(metadata.get("annotations") or {})
    from_cluster = metadata.get("uid") is not None
    last_applied = annotations.pop(LAST_APPLIED, None)
    annotations.pop(LAST_HANDLED, None)
    if not from_cluster:
        last_applied = go_json(_applied(obj))
    essence: dict[str, Any] = {"spec": dict(spec)}
    if metadata.get("labels") or annotations:
        essence["metadata"] = {k: v for k, v in (("labels", metadata.get("labels")), ("annotations", annotations)) if v}
    copies = {LAST_HANDLED: json.dumps(essence, separators=(",", ":")) + "\n", KOPF_MARKER[0]: KOPF_MARKER[1]}
    if last_applied is not None:
        copies[LAST_APPLIED] = last_applied
    total = annotation_bytes({**annotations, **copies}) + PROGRESS_RESERVE
    if total <= TOTAL_ANNOTATION_BYTES:
        return []
    code = (spec.get("handler") or {}).get("code")
    code_bytes = 0 if not isinstance(code, str) else len(json.dumps(code)) + (len(go_json(code).encode()) if last_applied is not None else 0)
    path = "spec.handler.code" if code_bytes * 2 > total else "spec"
    how = "kubectl apply and the operator each store a copy of the function" if last_applied is not None else "the operator stores a copy of the spec"
    fix = "move the code into a ConfigMap (spec.handler.configMap) or the handler image" if path == "spec.handler.code" else "make the spec smaller"
    return [FieldError(path, f"too large: {how} in annotations ({LAST_APPLIED if last_applied is not None else LAST_HANDLED}), "
                             f"which would take {total} bytes; the API server allows {TOTAL_ANNOTATION_BYTES} in total: {fix}")]


def go_json(obj: Any) -> str:
    """`obj` as kubectl writes it (Go's encoding/json: compact, HTML-escaped, UTF-8), plus its newline."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029"),
                          ("\\b", "\\u0008"), ("\\f", "\\u000c")):
        text = text.replace(char, escaped)
    return text + "\n"


def _applied(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What kubectl records: the object as written, without its own annotation."""
    applied = dict(obj)
    metadata = dict(applied.get("metadata") or {})
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    applied["metadata"] = metadata
    return applied
