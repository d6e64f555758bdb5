"""Reading AIFunction documents from files or stdin, with errors that name the file and field."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..spec import AIFunction, InvalidSpec, parse_function
from .bounded_yaml import MAX_EXPANDED_BYTES, YAMLBoundsError, load_all


class InputError(Exception):
    """Input that cannot be used; the message is ready for the terminal."""


@dataclass(frozen=True)
class Document:
    source: str  # "file.yaml" or "file.yaml#2" for the second document of a stream
    body: Any


def read_documents(path: str) -> list[Document]:
    """YAML documents in `path` ('-' for stdin), empty documents skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    name = "<stdin>" if path == "-" else path
    if len(text) > MAX_EXPANDED_BYTES:
        raise InputError(f"{path}: larger than {MAX_EXPANDED_BYTES // (1024 * 1024)} MiB (the API server's limit)")
    try:
        bodies = [b for b in load_all(text) if b is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = "refused" if isinstance(exc, YAMLBoundsError) else "not valid YAML"
        raise InputError(f"{name}: {what}{where}: {getattr(exc, 'problem', exc)}") from None
    if not bodies:
        raise InputError(f"{name}: no AIFunction found")
    return [Document(name if len(bodies) == 1 else f"{name}#{i + 1}", b) for i, b in enumerate(bodies)]


def load_functions(path: str) -> list[AIFunction]:
    """Every AIFunction in `path`, or InputError listing every problem in every document."""
    functions: list[AIFunction] = []
    problems: list[str] = []
    for doc in read_documents(path):
        try:
            functions.append(parse_function(doc.body))
        except InvalidSpec as exc:
            problems += [f"{doc.source}: {error}" for error in exc.errors]
    if problems:
        raise InputError("\n".join(problems))
    return functions
