"""`aifn validate`'s annotation budget against the real API server and kopf's own storage code.

A function applied with `kubectl apply` (client-side) gets kubectl's copy of itself as an
annotation; the operator's kopf then patches in its own copy (`aifn.dev/last-handled-configuration`,
built and stored here by kopf's AnnotationsDiffBaseStorage, as the operator configures it).
The largest function `aifn validate` accepts must survive both; one 2 KiB larger, which it
refuses, is accepted by `kubectl apply` and then refuses kopf's patch: the failure the check
exists to report before anything is applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kopf
import pytest

from aifunction_operator.spec import InvalidSpec, parse_function
from support.controlplane import ROOT, ControlPlane

pytestmark = pytest.mark.integration

SOURCE = (ROOT / "examples/handlers/digits/handler.py").read_text()
CODE = (SOURCE * (100_000 // len(SOURCE) + 1))[:100_000]
STORAGE = kopf.AnnotationsDiffBaseStorage(prefix="aifn.dev", key="last-handled-configuration")


def function(namespace: str, name: str, note: int) -> dict[str, Any]:
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction",
            "metadata": {"name": name, "namespace": namespace, "annotations": {"example.com/note": "n" * note}},
            "spec": {"model": {"repository": "s3://b/r"}, "handler": {"entrypoint": "handler:handle", "code": CODE}}}


def accepted(obj: dict[str, Any]) -> bool:
    try:
        parse_function(obj)
    except InvalidSpec:
        return False
    return True


def largest_accepted_note(namespace: str) -> int:
    low, high = 0, 200_000
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if accepted(function(namespace, "probe", middle)) else (low, middle)
    return low


def apply_then_store_like_kopf(plane: ControlPlane, obj: dict[str, Any], tmp_path: Path) -> tuple[bool, str]:
    """kubectl apply (must succeed), then kopf's patch of its copy: (patch accepted, its output)."""
    plane.kubectl("apply", "-f", "-", input=json.dumps(obj))
    name, namespace = obj["metadata"]["name"], obj["metadata"]["namespace"]
    body = kopf.Body(json.loads(plane.kubectl("get", "aifunction", name, "-n", namespace, "-o", "json").stdout))
    patch = kopf.Patch()
    STORAGE.store(body=body, patch=patch, essence=STORAGE.build(body=body))
    patch_file = tmp_path / f"{name}.json"
    patch_file.write_text(json.dumps(dict(patch)))
    result = plane.kubectl("patch", "aifunction", name, "-n", namespace, "--type", "merge", "--patch-file", str(patch_file), check=False)
    return result.returncode == 0, result.stdout + result.stderr


def test_annotation_budget_matches_the_api_server(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    note = largest_accepted_note(namespace)
    assert 10_000 < note < 60_000, note  # 100,000 characters of code leave room for a note of this size
    fits, output = apply_then_store_like_kopf(control_plane, function(namespace, "fits", note), tmp_path)
    assert fits, output
    assert not accepted(function(namespace, "over", note + 2048))
    fits, output = apply_then_store_like_kopf(control_plane, function(namespace, "over", note + 2048), tmp_path)
    assert not fits and "metadata.annotations: Too long" in output and "262144 bytes" in output, output
