"""The pipeline flows one way: the pure stages import no Kubernetes client, kopf or I/O stage.

A static check over the source (like import-linter's forbidden contract), so a stray import
fails here instead of surfacing as a slow, side-effecting renderer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "aifunction_operator"
PURE = ["spec", "render", "crd.py", "naming.py", "config.py", "status.py", "preflight.py",
        "ingress/kingress.py", "ingress/envoy.py", "ingress/status.py"]
FORBIDDEN = ("kopf", "kubernetes", "aiohttp", "tritonclient", "kserve", "subprocess", "requests", "urllib", "http.server",
             "aifunction_operator.apply", "aifunction_operator.local", "aifunction_operator.ingress.controller")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                base = ".".join(["aifunction_operator", *path.relative_to(PACKAGE).parent.parts][: len(path.relative_to(PACKAGE).parent.parts) + 2 - node.level])
                found.add(f"{base}.{node.module}" if node.module else base)
            elif node.module:
                found.add(node.module)
    return found


def pure_files() -> list[Path]:
    files: list[Path] = []
    for entry in PURE:
        target = PACKAGE / entry
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target] if target.exists() else []
    return files


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_stage_has_no_io_imports(path: Path) -> None:
    bad = {m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_every_guarded_path_exists() -> None:
    missing = [entry for entry in PURE if not (PACKAGE / entry).exists()]
    assert not missing, f"test_layers guards paths that no longer exist: {missing}"


def test_resolver_sees_relative_imports() -> None:
    assert "aifunction_operator.spec" in imported_modules(PACKAGE / "render" / "service.py")
