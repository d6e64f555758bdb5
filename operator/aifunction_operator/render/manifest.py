"""`Manifest`: a Kubernetes object as plain JSON data, as the renderer builds it and the API server returns it."""

from __future__ import annotations

from typing import Any

Manifest = dict[str, Any]
