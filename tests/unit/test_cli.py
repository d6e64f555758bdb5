"""`aifn render` and `aifn validate` as users run them: a subprocess, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
AIFN = [sys.executable, "-m", "aifunction_operator"]


def aifn(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AIFN, *args], input=stdin, capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_render_prints_the_service_first_as_yaml() -> None:
    result = aifn("render", "-f", "examples/image-classifier-gpu.yaml")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert docs[0]["kind"] == "Service" and docs[0]["apiVersion"] == "serving.knative.dev/v1"
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_render_json() -> None:
    result = aifn("render", "-f", "examples/digits.yaml", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metadata"]["name"] == "digits"


def test_render_reads_stdin_and_streams() -> None:
    two = (ROOT / "examples/digits.yaml").read_text() + "\n---\n" + (ROOT / "examples/reranker-multigpu.yaml").read_text()
    result = aifn("render", "-f", "-", stdin=two)
    assert result.returncode == 0, result.stderr
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout)] == ["digits", "reranker"]


def test_render_quotes_what_go_yaml_reads_as_booleans() -> None:
    """kubectl's YAML 1.1 decoder reads a plain y or n as a boolean; PyYAML writes them plain."""
    function = ("apiVersion: aifn.dev/v1alpha1\nkind: AIFunction\nmetadata: {name: fn}\n"
                "spec: {model: {repository: s3://b/r, credentialsSecret: 'n'}, placement: {runtimeClassName: 'y'}}\n")
    result = aifn("render", "-f", "-", stdin=function)
    assert result.returncode == 0, result.stderr
    assert "name: 'n'\n" in result.stdout and "runtimeClassName: 'y'\n" in result.stdout


def test_validate_ok() -> None:
    result = aifn("validate", "-f", "examples/reranker-multigpu.yaml")
    assert result.returncode == 0 and "ml-serving/reranker: valid" in result.stdout


BAD = """apiVersion: aifn.dev/v1alpha1
kind: AIFunction
metadata: {name: Bad_Name}
spec:
  model: {repository: "ftp://x/y", nmae: a}
  resources: {gpu: {count: -1}}
  scaling: {minReplicas: 3, maxReplicas: 1, targetConcurrency: "8"}
"""


@pytest.mark.parametrize("command", ["render", "validate"])
def test_invalid_function_names_every_field_without_traceback(command: str) -> None:
    result = aifn(command, "-f", "-", stdin=BAD)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    for fragment in [
        "metadata.name: must be a DNS-1035 label",
        "spec.model.nmae: unknown field (did you mean 'name'?)",
        "spec.model.repository: unsupported URI 'ftp://x/y'",
        "spec.resources.gpu.count: must be >= 0, got -1",
        "spec.scaling.maxReplicas: must be >= spec.scaling.minReplicas (3)",
        "spec.scaling.targetConcurrency: must be an integer, got a string",
    ]:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("stdin", "args", "fragment"),
    [
        ("a: [", ("render", "-f", "-"), "not valid YAML (line 1, column 5)"),
        ("", ("render", "-f", "-"), "no AIFunction found"),
        ("- 1\n- 2\n", ("validate", "-f", "-"), "<document>: must be an AIFunction object, got list"),
        (None, ("render", "-f", "does-not-exist.yaml"), "does-not-exist.yaml: cannot read"),
        ("apiVersion: aifn.dev/v1alpha1\nkind: AIFunction\nmetadata: {name: l}\nspec: {model: {repository: ./m}}\n", ("render", "-f", "-"), "works only with `aifn run`"),
    ],
)
def test_bad_input_exit_2(stdin: str | None, args: tuple[str, ...], fragment: str) -> None:
    result = aifn(*args, stdin=stdin)
    assert result.returncode == 2, result
    assert fragment in result.stderr and "Traceback" not in result.stderr


def test_crd_command_matches_committed_file() -> None:
    result = aifn("crd")
    assert result.returncode == 0
    assert yaml.safe_load(result.stdout) == yaml.safe_load((ROOT / "crds/aifunctions.aifn.dev.yaml").read_text())


def test_console_script_is_installed() -> None:
    result = subprocess.run([str(Path(sys.executable).parent / "aifn"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "render" in result.stdout
