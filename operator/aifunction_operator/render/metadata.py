"""Object metadata shared by every rendered child, and the children's names."""

from __future__ import annotations

import hashlib
from typing import Any

from ..constants import API_VERSION, KIND, LABEL_FUNCTION, LABEL_MANAGED_BY, LABEL_NAME, MANAGED_BY
from ..spec import AIFunction


CHILD_NAME_MAX = 63  # a DNS-1123 label: Knative Eventing copies Trigger names into label values
CHILD_HASH_LENGTH = 8


def child_name(function: str, part: str) -> str:
    """`<function>-<part>-<hash>`, the name of one of a function's children.

    The hash is of the pair (function, part), so `a` + `b-c` and `a-b` + `c` get different names
    although their readable prefixes are equal, and a user's object named `<function>-<part>` is
    never the operator's. The readable prefix is cut to keep the name within 63 characters.
    """
    digest = hashlib.sha256(f"{function}/{part}".encode()).hexdigest()[:CHILD_HASH_LENGTH]
    return f"{function}-{part}"[: CHILD_NAME_MAX - CHILD_HASH_LENGTH - 1] + f"-{digest}"


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
