"""Hostile documents for `aifn validate` and `aifn render`: exit 2 naming the field, no traceback, no hang."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAD = "apiVersion: aifn.dev/v1alpha1\nkind: AIFunction\n"
SPEC = "spec: {model: {repository: s3://b/r}}\n"


def laughs(levels: int) -> str:
    """A "billion laughs" document: each level aliases the previous one nine times."""
    lines = [HEAD + "metadata: {name: fn}", 'x0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels + 1)]
    lines.append(f"spec: {{model: {{repository: s3://b/r}}, placement: {{affinity: {{x: *a{levels}}}}}}}")
    return "\n".join(lines) + "\n"


CASES = [
    ("annotations as a list", HEAD + "metadata: {name: fn, annotations: [a]}\n" + SPEC, "metadata.annotations: must be an object of strings, got a list"),
    ("annotation not a string", HEAD + "metadata: {name: fn, annotations: {a: 1}}\n" + SPEC, "metadata.annotations.a: must be a string, got an integer"),
    ("annotations over 256 KiB", HEAD + "metadata: {name: fn, annotations: {a: " + "b" * 262144 + "}}\n" + SPEC, "metadata.annotations: must be at most 262144 bytes"),
    ("labels as a string", HEAD + "metadata: {name: fn, labels: x}\n" + SPEC, "metadata.labels: must be an object of strings, got a string"),
    ("label value with a space", HEAD + "metadata: {name: fn, labels: {a: b c}}\n" + SPEC, "metadata.labels.a: must be at most 63 characters"),
    ("namespace as a list", HEAD + "metadata: {name: fn, namespace: [a]}\n" + SPEC, "metadata.namespace: must be a DNS-1123 label"),
    ("name as a number", HEAD + "metadata: {name: 5}\n" + SPEC, "metadata.name: must be a string, got an integer"),
    ("name with a trailing newline", HEAD + 'metadata: {name: "x\\n"}\n' + SPEC, "metadata.name: must be a DNS-1035 label"),
    ("model name with a trailing newline", HEAD + 'metadata: {name: fn}\nspec: {model: {repository: s3://b/r, name: "m\\n"}}\n', "spec.model.name: must be a Triton model name"),
    ("duration with a trailing newline", HEAD + 'metadata: {name: fn}\nspec: {model: {repository: s3://b/r}, scaling: {startupTimeout: "5m\\n"}}\n', "spec.scaling.startupTimeout: must be a duration"),
    ("billion laughs", laughs(9), "x5: larger than 3 MiB once its YAML aliases are expanded"),
    ("recursive alias", HEAD + "metadata: {name: fn}\nspec: {model: {repository: s3://b/r}, placement: {affinity: &a {x: [*a]}}}\n", "spec.placement.affinity.x[0]: the alias *a is inside its own anchor"),
    ("deep block nesting", HEAD + "metadata: {name: fn}\nspec: {model: {repository: s3://b/r}, placement: {affinity: {x: " + "[" * 5000 + "]" * 5000 + "}}}\n", "nested more than 64 levels deep"),
    ("deep JSON", '{"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": ' + "{\"a\": " * 3000 + "1" + "}" * 3000 + "}", "metadata.a.a.a"),
    # Found by tests/unit/test_spec_properties.py: the duplicate check hashed a list-map key that was a list.
    ("list-map key that is a list", HEAD + "metadata: {name: fn}\nspec: {model: {repository: s3://b/r}, handler: {entrypoint: 'h:f'}, triggers: {schedules: [{name: [a], cron: '@hourly'}, {name: [a], cron: '@daily'}]}}\n", "spec.triggers.schedules[0].name: must be a string, got a list"),
    ("larger than 3 MiB", HEAD + "metadata: {name: fn}\n" + SPEC + "# " + "x" * (3 * 1024 * 1024) + "\n", "larger than 3 MiB"),
]


@pytest.mark.parametrize("command", ["validate", "render"])
@pytest.mark.parametrize(("case", "document", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_hostile_document_exits_2_naming_the_field(command: str, case: str, document: str, fragment: str) -> None:
    args = [sys.executable, "-m", "aifunction_operator", command, "-f", "-"] + (["-o", "json"] if command == "render" else [])
    started = time.monotonic()
    result = subprocess.run(args, input=document, capture_output=True, text=True, timeout=60, cwd=ROOT)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, f"{case}: exit {result.returncode}\n{result.stderr[-2000:]}"
    assert "Traceback" not in result.stderr and result.stdout == "", result.stderr[-2000:]
    assert fragment in result.stderr, f"{case}: {result.stderr[:600]!r}"
    assert elapsed < 20, f"{case}: took {elapsed:.1f}s"
