"""`aifn deploy`, `aifn delete` and `aifn --version` before any cluster is reached: usage and input errors
exit 2 naming what is wrong, no cluster to talk to exits 1 (subprocesses, as users run them)."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NO_CLUSTER = "/nonexistent/kubeconfig"


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: aifn.dev/v1alpha1\nkind: AIFunction\nmetadata: {name: fn}\nspec:\n  model: {nmae: digits, repository: s3://m}\n")
    return path


CASES = [
    (["--version"], 0, f"aifn {version('aifunction-operator')}"),
    (["deploy", "-f", "examples/digits.yaml", "--timeout", "5x"], 2, "argument --timeout: not a duration: '5x'"),
    (["deploy", "-f", "{bad}", "--kubeconfig", NO_CLUSTER], 2, "{bad}: spec.model.nmae: unknown field"),
    (["deploy", "-f", "examples/digits.yaml", "--kubeconfig", NO_CLUSTER], 1, "aifn deploy: no cluster to talk to"),
    (["delete", "--kubeconfig", NO_CLUSTER], 2, "aifn delete: name the functions, or give -f FILE (not both)"),
    (["delete", "fn", "-f", "examples/digits.yaml"], 2, "aifn delete: name the functions, or give -f FILE (not both)"),
    (["delete", "fn", "--kubeconfig", NO_CLUSTER], 1, "aifn delete: no cluster to talk to"),
]


@pytest.mark.parametrize(("argv", "code", "says"), CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_exit_codes_before_the_cluster(bad_file: Path, argv: list[str], code: int, says: str) -> None:
    argv = [a.replace("{bad}", str(bad_file)) for a in argv]
    result = subprocess.run([sys.executable, "-m", "aifunction_operator", *argv], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == code, result
    assert says.replace("{bad}", str(bad_file)) in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
