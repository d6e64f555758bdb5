"""Load the user's code once per process and recognise its style.

`module:function` is a Lambda-style handler `(event, context)` (its optional `routes`
attribute claims more paths: `routes.py`); `module:Class` is a
KServe-style transformer: the class is instantiated once (no arguments), its `load()` runs
once if it has one, and `preprocess` / `postprocess` wrap every model call. Either style
may be written with `async def`. The contract is documented as Protocols in `api`
(`LambdaFunction`, `KServeTransformer`); this module is what enforces it at start.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import HandlerLoadError
from .routes import Route, parse_routes

ENTRYPOINT_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class LambdaHandler:
    """`lambda_handler(event, context)`, and the routes it claims beyond `POST /` and `POST /invoke`."""

    function: Callable[..., Any]
    is_async: bool
    entrypoint: str
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class TransformerHandler:
    """An instance with `preprocess(body, headers)` and `postprocess(outputs, headers)`."""

    instance: Any
    preprocess: Callable[..., Any] | None
    postprocess: Callable[..., Any] | None
    entrypoint: str


UserCode = LambdaHandler | TransformerHandler


def parse_entrypoint(entrypoint: str) -> tuple[str, str]:
    """`pkg.module:attr` -> ("pkg.module", "attr"); HandlerLoadError when malformed."""
    if not ENTRYPOINT_RE.match(entrypoint or ""):
        raise HandlerLoadError(
            f"handler entrypoint {entrypoint!r} must be 'module:function' or 'module:Class' "
            "(e.g. 'handler:lambda_handler')"
        )
    module, attr = entrypoint.split(":")
    return module, attr


def load_user_code(entrypoint: str, handler_path: str | Path | None = None) -> UserCode:
    """Import the entrypoint's module (with `handler_path` first on sys.path) and wrap it."""
    module_name, attr = parse_entrypoint(entrypoint)
    if handler_path:
        path = str(Path(handler_path).resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name.split(".")[0]:
            raise HandlerLoadError(
                f"handler module {module_name!r} not found (looked in {handler_path or 'sys.path'})"
            ) from exc
        raise HandlerLoadError(f"importing handler module {module_name!r} failed: {exc!r}") from exc
    except Exception as exc:
        raise HandlerLoadError(f"importing handler module {module_name!r} failed: {exc!r}") from exc
    target = getattr(module, attr, None)
    if target is None:
        raise HandlerLoadError(f"handler module {module_name!r} has no attribute {attr!r}")
    if inspect.isclass(target):
        return _transformer(target, entrypoint)
    if callable(target):
        _check_lambda_signature(target, entrypoint)
        routes = parse_routes(getattr(target, "routes", None), entrypoint)
        return LambdaHandler(target, inspect.iscoroutinefunction(target), entrypoint, routes)
    raise HandlerLoadError(f"handler {entrypoint!r} is a {type(target).__name__}, not a function or class")


def _check_lambda_signature(function: Callable[..., Any], entrypoint: str) -> None:
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        raise HandlerLoadError(f"handler function {entrypoint!r} must accept two arguments (event, context)") from None
    except ValueError:
        pass  # builtins without a signature: trust them


def _transformer(cls: type, entrypoint: str) -> TransformerHandler:
    preprocess = getattr(cls, "preprocess", None)
    postprocess = getattr(cls, "postprocess", None)
    if preprocess is None and postprocess is None:
        raise HandlerLoadError(f"handler class {entrypoint!r} needs a preprocess and/or a postprocess method")
    try:
        instance = cls()
    except Exception as exc:
        raise HandlerLoadError(f"creating handler class {entrypoint!r} failed: {exc!r}") from exc
    load = getattr(instance, "load", None)
    if callable(load):
        try:
            load()
        except Exception as exc:
            raise HandlerLoadError(f"{entrypoint}.load() failed: {exc!r}") from exc
    return TransformerHandler(
        instance,
        getattr(instance, "preprocess", None),
        getattr(instance, "postprocess", None),
        entrypoint,
    )
