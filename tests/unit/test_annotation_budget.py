"""Inline code and the API server's 256 KiB of annotations: what kubectl and the operator store must fit.

The boundary below (123,234 characters of real handler code fit with `kubectl apply`, 123,271
do not) was measured with kube-apiserver 1.35 and kopf 1.45's own storage code; the
integration test tests/integration/test_crd.py::test_annotation_budget_matches_the_api_server
re-measures it against the real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aifunction_operator.spec import InvalidSpec, parse_function
from aifunction_operator.spec.annotation_budget import LAST_APPLIED, annotation_budget_errors, go_json
from aifunction_operator.spec.schema import INLINE_CODE_MAX_CHARS, spec_schema
from aifunction_operator.spec.validate import validate

ROOT = Path(__file__).resolve().parents[2]
SOURCE = (ROOT / "examples/handlers/digits/handler.py").read_text()


def code(chars: int, text: str = SOURCE) -> str:
    return (text * (chars // len(text) + 1))[:chars]


def function(handler_code: str, annotations: dict[str, str] | None = None, uid: str | None = None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "f", "namespace": "default"}
    if annotations:
        metadata["annotations"] = annotations
    if uid:
        metadata["uid"] = uid
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": metadata,
            "spec": {"model": {"repository": "s3://b/r"}, "handler": {"entrypoint": "handler:handle", "code": handler_code}}}


def errors(obj: dict[str, Any]) -> dict[str, str]:
    try:
        parse_function(obj)
    except InvalidSpec as exc:
        return {e.path: e.message for e in exc.errors}
    return {}


CASES = [
    ("the schema's maximum of real code", function(code(INLINE_CODE_MAX_CHARS)), None),
    ("one character over the schema", function(code(INLINE_CODE_MAX_CHARS + 1)), "must be at most 114688 characters long"),
    ("code full of '<' (six bytes each in kubectl's copy)", function("#" + "<" * 60000), "too large: kubectl apply and the operator"),
    ("code plus a large annotation", function(code(100_000), {"note": "x" * 60_000}), "too large"),
    ("read from the API server, applied server-side (no kubectl copy)", function("#" + "<" * 60000, uid="u1"), None),
    ("read from the API server with kubectl's copy", function(code(110_000), {LAST_APPLIED: "x" * 150_000}, uid="u1"), "too large"),
]


@pytest.mark.parametrize(("case", "obj", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_inline_code_within_the_annotation_budget(case: str, obj: dict[str, Any], fragment: str | None) -> None:
    found = errors(obj)
    if fragment is None:
        assert found == {}, f"{case}: {found}"
    else:
        assert "spec.handler.code" in found and fragment in found["spec.handler.code"], f"{case}: {found}"


def budget(obj: dict[str, Any]) -> list[str]:
    """The budget check alone (past the schema's maxLength), on the spec with the CRD's defaults as stored."""
    spec, _ = validate(obj["spec"], spec_schema(), "spec")
    return [str(e) for e in annotation_budget_errors(obj, spec)]


def test_the_measured_boundary_is_inside_the_check() -> None:
    """The API server accepted 123,234 characters and refused 123,271; the check keeps 1 KiB more for kopf's progress."""
    assert budget(function(code(122_000))) == []
    assert budget(function(code(123_271)))[0].startswith("spec.handler.code: too large")


def test_go_json_escapes_as_kubectl_does() -> None:
    assert go_json({"a": "<&>\u2028é\b"}) == '{"a":"\\u003c\\u0026\\u003e\\u2028é\\u0008"}\n'
