"""Object metadata shared by every rendered child."""

from __future__ import annotations

from typing import Any

from ..naming import API_VERSION, KIND, LABEL_FUNCTION, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY
from ..spec import AIFunction


def function_labels(fn: AIFunction) -> dict[str, str]:
    """Labels every child of a function carries."""
    return {LABEL_NAME: fn.name, LABEL_MANAGED_BY: MANAGED_BY, LABEL_FUNCTION: fn.name}


def owner_references(fn: AIFunction) -> list[dict[str, Any]]:
    """A controller reference to the function, so garbage collection deletes children with it."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": fn.name,
            "uid": fn.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def child_metadata(fn: AIFunction, name: str, extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """name, namespace, labels and (when the function came from the apiserver) the owner reference."""
    metadata: dict[str, Any] = {"name": name, "namespace": fn.namespace, "labels": {**function_labels(fn), **(extra_labels or {})}}
    if fn.uid:
        metadata["ownerReferences"] = owner_references(fn)
    return metadata
