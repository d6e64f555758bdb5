"""Run the real helm binary (bin/helm from `make tools`, else helm on PATH) over our chart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aifunction-operator"


def helm_binary() -> Path | None:
    """bin/helm, or helm on PATH, or None."""
    built = ROOT / "bin" / "helm"
    if built.exists():
        return built
    found = shutil.which("helm")
    return Path(found) if found else None


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`helm ARGS...`; raises with helm's stderr when `check` and it fails."""
    binary = helm_binary()
    if binary is None:
        raise FileNotFoundError("helm not found: run `make tools` (bin/helm)")
    argv = [str(binary), *args]
    if kubeconfig is not None:
        argv.append(f"--kubeconfig={kubeconfig}")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def set_args(values: dict[str, str]) -> list[str]:
    """--set/--set-string pairs for `values` (dotted keys; {a,b} lists as helm writes them)."""
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


def render(values: dict[str, str] | None = None, release: str = "aifn", namespace: str = "aifn-system") -> list[dict[str, Any]]:
    """`helm template` of the chart with `values`, as parsed objects."""
    out = helm("template", release, str(CHART), "--namespace", namespace, *set_args(values or {})).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind, in render order."""
    return [obj for obj in objects if obj.get("kind") == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of `kind`; fails if there is not exactly one."""
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
