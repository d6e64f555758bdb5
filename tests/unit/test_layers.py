"""The pipeline flows one way: the pure stages import no Kubernetes client, kopf or I/O stage.

A static check over the source (like import-linter's forbidden contract), so a stray import
fails here instead of surfacing as a slow, side-effecting renderer. A guarded path, or a module of
ours that is forbidden, that no longer exists fails too: moving a file must not turn its check off.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "aifunction_operator"
PURE = ["spec", "render", "constants.py", "triton_command.py", "controller/status.py", "controller/preflight.py",
        "controller/children.py", "controller/decide.py",
        "ingress/kingress.py", "ingress/envoy.py", "ingress/status.py", "commands/progress.py"]
FORBIDDEN = ("kopf", "kubernetes", "aiohttp", "tritonclient", "kserve", "subprocess", "requests", "urllib", "http.server",
             "aifunction_operator.controller.kube_client", "aifunction_operator.controller.state",
             "aifunction_operator.controller.wiring", "aifunction_operator.local", "aifunction_operator.ingress.controller")
# Who may import whom among the package's folders (the README's Layout section draws the same):
# the shared stages know nothing of the programs built on them, and the programs not of each other.
LAYERS = {
    "spec": ("aifunction_operator.render", "aifunction_operator.controller", "aifunction_operator.local",
             "aifunction_operator.handler", "aifunction_operator.ingress", "aifunction_operator.commands"),
    "render": ("aifunction_operator.controller", "aifunction_operator.local", "aifunction_operator.handler",
               "aifunction_operator.ingress", "aifunction_operator.commands"),
    "controller": ("aifunction_operator.local", "aifunction_operator.handler", "aifunction_operator.ingress",
                   "aifunction_operator.commands"),
    "handler": ("aifunction_operator.controller", "aifunction_operator.local", "aifunction_operator.render",
                "aifunction_operator.ingress", "aifunction_operator.commands"),
    "local": ("aifunction_operator.controller", "aifunction_operator.render", "aifunction_operator.ingress",
              "aifunction_operator.commands"),
    "ingress": ("aifunction_operator.controller", "aifunction_operator.local", "aifunction_operator.handler",
                "aifunction_operator.render", "aifunction_operator.spec", "aifunction_operator.commands"),
}


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


def guarded_files(entry: str) -> list[Path]:
    """The Python files of one guarded entry; fails, naming it, when the entry is gone or holds none.

    A guarded path that moved must fail here rather than drop out of the check unnoticed.
    """
    target = PACKAGE / entry
    shown = target.relative_to(PACKAGE.parent.parent)
    assert target.exists(), f"test_layers guards {shown}, which no longer exists: update PURE to where it went"
    files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
    assert files, f"test_layers guards {shown}, which holds no Python files"
    return files


@pytest.mark.parametrize("entry", PURE)
def test_pure_stage_has_no_io_imports(entry: str) -> None:
    bad = {}
    for path in guarded_files(entry):
        found = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
        if found:
            bad[str(path.relative_to(PACKAGE))] = found
    assert not bad, f"pure stage {entry} imports I/O: {bad}"


@pytest.mark.parametrize(("folder", "forbidden"), sorted(LAYERS.items()))
def test_folder_imports_only_what_its_layer_may(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = {}
    for path in guarded_files(folder):
        found = sorted(m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in forbidden))
        if found:
            bad[str(path.relative_to(PACKAGE))] = found
    assert not bad, f"{folder}/ imports what its layer may not (see the README's Layout): {bad}"




@pytest.mark.parametrize("module", sorted({f for f in FORBIDDEN + sum(LAYERS.values(), ()) if f.startswith("aifunction_operator.")}))
def test_every_forbidden_module_of_the_package_exists(module: str) -> None:
    """A forbidden module of our own that moved would forbid nothing: it must still be there."""
    relative = Path(*module.split(".")[1:])
    assert (PACKAGE / relative).is_dir() or (PACKAGE / relative).with_suffix(".py").is_file(), (
        f"test_layers forbids {module}, which no longer exists: update FORBIDDEN to where it went")


def test_resolver_sees_relative_imports() -> None:
    assert "aifunction_operator.spec" in imported_modules(PACKAGE / "render" / "service.py")
