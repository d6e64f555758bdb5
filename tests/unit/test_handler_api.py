"""Every example handler satisfies the handler API (handler/api.py) structurally, and the checks agree with the loader.

The Protocols in `aifunction_operator.handler.api` are the documented contract; the loader is
what enforces it at start. This test reads the entrypoint of every AIFunction under
examples/handlers/, imports the module it names (from the handler path the function's
annotation gives, or its inline code) and checks the function or class against the Protocol's
own signatures: a Lambda-style function must take the arguments `LambdaFunction.__call__`
passes, a KServe-style class must have `preprocess`/`postprocess` taking what
`KServeTransformer` passes, and a synchronous `load()` taking nothing.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import aifunction_operator.handler as handler_package
from aifunction_operator.handler import api
from aifunction_operator.handler.errors import HandlerLoadError
from aifunction_operator.handler.loader import _check_lambda_signature, parse_entrypoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "handlers"
HANDLER_PATH_ANNOTATION = "aifn.dev/local-handler-path"
TRANSFORMER_METHODS = ("load", "preprocess", "postprocess")


@dataclass(frozen=True)
class Example:
    source: Path  # the AIFunction's YAML file
    entrypoint: str
    handler_dir: Path | None  # where the module's file is, or None for inline code
    code: str | None

    @property
    def id(self) -> str:
        return f"{self.source.relative_to(EXAMPLES)}:{self.entrypoint}"


def find_examples() -> list[Example]:
    found = []
    for path in sorted(EXAMPLES.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "AIFunction":
                continue
            handler = (doc.get("spec") or {}).get("handler")
            if not handler:
                continue
            annotations = (doc.get("metadata") or {}).get("annotations") or {}
            handler_dir = (path.parent / annotations.get(HANDLER_PATH_ANNOTATION, ".")).resolve()
            found.append(Example(path, handler["entrypoint"], None if handler.get("code") else handler_dir, handler.get("code")))
    return found


EXAMPLE_HANDLERS = find_examples()


def load_target(example: Example) -> Any:
    """The function or class the entrypoint names, imported under a private name (sys.modules untouched)."""
    module_name, attr = parse_entrypoint(example.entrypoint)
    module = types.ModuleType(f"_aifn_example_{abs(hash(example.id))}")
    if example.code is not None:
        exec(compile(example.code, f"{example.source}:spec.handler.code", "exec"), module.__dict__)  # noqa: S102 - our own examples
    else:
        assert example.handler_dir is not None
        file = example.handler_dir / (module_name.replace(".", "/") + ".py")
        assert file.is_file(), f"{example.source}: entrypoint {example.entrypoint} names {file}, which does not exist"
        spec = importlib.util.spec_from_file_location(module.__name__, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    assert hasattr(module, attr), f"{example.source}: {example.entrypoint}: the module has no {attr!r}"
    return getattr(module, attr)


def protocol_arguments(method: Callable[..., Any]) -> int:
    """How many positional arguments the runtime passes to a Protocol's method (self not counted)."""
    params = list(inspect.signature(method).parameters.values())[1:]
    assert all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)
    return len(params)


def accepts(function: Callable[..., Any], count: int, *, bound_self: bool = False) -> bool:
    """Whether `function` can be called with `count` positional arguments (after self for a method)."""
    try:
        inspect.signature(function).bind(*([None] * (count + (1 if bound_self else 0))))
    except TypeError:
        return False
    return True


def lambda_problems(target: Any) -> list[str]:
    """What keeps `target` from being a `LambdaFunction`; empty when it is one."""
    if inspect.isclass(target) or not isinstance(target, api.LambdaFunction):
        return [f"{target!r} is not a callable function"]
    count = protocol_arguments(api.LambdaFunction.__call__)
    if not accepts(target, count):
        return [f"{target.__name__}{inspect.signature(target)} does not take {count} positional arguments (event, context)"]
    return []


def transformer_problems(cls: Any) -> list[str]:
    """What keeps `cls` from being a `KServeTransformer` class; empty when it is one."""
    if not inspect.isclass(cls):
        return [f"{cls!r} is not a class"]
    problems = []
    if not any(callable(getattr(cls, name, None)) for name in ("preprocess", "postprocess")):
        problems.append(f"{cls.__name__} has neither preprocess nor postprocess")
    for name in TRANSFORMER_METHODS:
        method = getattr(cls, name, None)
        if method is None:
            continue  # each method is optional (at least one of preprocess/postprocess: above)
        count = protocol_arguments(getattr(api.KServeTransformer, name))
        if not callable(method) or not accepts(method, count, bound_self=True):
            problems.append(f"{cls.__name__}.{name} does not take {count} positional arguments after self")
    if inspect.iscoroutinefunction(getattr(cls, "load", None)):
        problems.append(f"{cls.__name__}.load is async; the loader calls it synchronously")
    if not accepts(cls, 0):
        problems.append(f"{cls.__name__}() needs arguments; the loader instantiates it with none")
    return problems


def handler_problems(target: Any) -> list[str]:
    return transformer_problems(target) if inspect.isclass(target) else lambda_problems(target)


def test_the_examples_are_found() -> None:
    """Every examples/handlers/<name>/ has a function with a handler: the check below is never vacuous."""
    folders = {p.parent for p in EXAMPLES.rglob("*.y*ml")}
    assert len(folders) >= 3
    assert {e.source.parent for e in EXAMPLE_HANDLERS} == folders


@pytest.mark.parametrize("example", EXAMPLE_HANDLERS, ids=lambda e: e.id)
def test_example_handler_satisfies_the_protocol(example: Example) -> None:
    target = load_target(example)
    assert handler_problems(target) == [], f"{example.id}: not what handler/api.py documents"


def test_protocol_signatures_are_what_the_runtime_passes() -> None:
    """The runtime calls handler(event, context), preprocess(body, headers), postprocess(outputs, headers), load()."""
    assert protocol_arguments(api.LambdaFunction.__call__) == 2
    assert protocol_arguments(api.KServeTransformer.preprocess) == 2
    assert protocol_arguments(api.KServeTransformer.postprocess) == 2
    assert protocol_arguments(api.KServeTransformer.load) == 0
    for name in ("get_remaining_time_in_millis", "infer", "ainfer"):
        assert callable(getattr(api.HandlerContext, name))
    assert inspect.iscoroutinefunction(api.HandlerContext.ainfer)


def test_the_runtime_context_satisfies_handler_context() -> None:
    from aifunction_operator.handler.context import LambdaContext

    documented = {name for name in dir(api.HandlerContext) if not name.startswith("_")}
    documented |= set(api.HandlerContext.__annotations__)
    context = LambdaContext.__new__(LambdaContext)
    LambdaContext.__init__(context, model=types.SimpleNamespace(model_name="m"), loop=None, function_name="f",  # type: ignore[arg-type]
                           request_id="r", deadline=0.0)
    missing = sorted(name for name in documented if not hasattr(context, name))
    assert missing == [], f"LambdaContext lacks what HandlerContext documents: {missing}"
    assert isinstance(context, api.HandlerContext)


def _one(event): ...
def _two(event, context): ...
def _two_and_a_default(event, context, extra=None): ...
def _three(event, context, extra): ...
def _varargs(*args): ...
async def _async_two(event, context): ...


@pytest.mark.parametrize(("function", "ok"), [
    (_one, False), (_two, True), (_two_and_a_default, True), (_three, False), (_varargs, True), (_async_two, True),
])
def test_lambda_check_agrees_with_the_loader(function: Callable[..., Any], ok: bool) -> None:
    """The structural check fails where the loader refuses the function at start, and passes where it does not."""
    assert (lambda_problems(function) == []) is ok
    try:
        _check_lambda_signature(function, "m:f")
    except HandlerLoadError:
        loader_ok = False
    else:
        loader_ok = True
    assert loader_ok is ok


class _Full:
    def load(self): ...
    def preprocess(self, body, headers): ...
    async def postprocess(self, outputs, headers): ...


class _PreOnly:
    async def preprocess(self, body, headers): ...


class _Neither:
    def load(self): ...


class _ShortPreprocess:
    def preprocess(self, body): ...


class _AsyncLoad:
    async def load(self): ...
    def postprocess(self, outputs, headers): ...


class _NeedsArguments:
    def __init__(self, model): ...
    def preprocess(self, body, headers): ...


@pytest.mark.parametrize(("cls", "ok"), [
    (_Full, True), (_PreOnly, True), (_Neither, False), (_ShortPreprocess, False), (_AsyncLoad, False), (_NeedsArguments, False),
])
def test_transformer_check(cls: type, ok: bool) -> None:
    assert (transformer_problems(cls) == []) is ok, transformer_problems(cls)


def test_the_handler_api_is_exported_and_light() -> None:
    for name in ("LambdaFunction", "KServeTransformer", "HandlerContext", "Event", "ProxyResponse", "BadRequest", "ModelInputError", "ModelUnavailable"):
        assert name in handler_package.__all__ and hasattr(handler_package, name)
    probe = "import sys, aifunction_operator.handler; print(sorted(m for m in ('numpy', 'kserve', 'fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(ROOT / "operator"), "PATH": ""})
    assert out.stdout.strip() == "[]", "importing the handler API pulled in heavy modules"

