"""Object metadata shared by every rendered child."""

from __future__ import annotations

from typing import Any

from ..naming import API_VERSION, KIND
from ..spec import AIFunction


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
