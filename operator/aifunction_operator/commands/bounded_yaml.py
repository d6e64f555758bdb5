"""YAML loading with bounds: nesting depth, size once aliases are expanded, no recursive aliases.

PyYAML's SafeLoader shares an anchored node wherever it is aliased, so a few hundred bytes of
nested aliases ("billion laughs") load instantly and then explode when anything walks or
serializes the result; a recursive alias (`&a [*a]`) makes a cyclic object; and deep nesting
exhausts Python's recursion limit inside the loader. BoundedLoader refuses all three while
composing, with the line and column, before any object is constructed.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64  # far beyond any AIFunction (an affinity term is about 10 levels deep)
MAX_EXPANDED_BYTES = 3 * 1024 * 1024  # the API server's request body limit


class YAMLBoundsError(yaml.MarkedYAMLError):
    """A document over one of the bounds; `problem` says which, `problem_mark` where."""


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that tracks each node's size as if every alias were copied out."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._path: list[str] = []
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        self._path.append(_step(index))
        try:
            if isinstance(event, yaml.AliasEvent):
                node = super().compose_node(parent, index)
                if id(node) not in self._sizes:
                    self._refuse(f"the alias *{event.anchor} is inside its own anchor (a recursive value)", event)
                return node
            if len(self._path) > MAX_DEPTH:
                self._refuse(f"nested more than {MAX_DEPTH} levels deep", event)
            node = super().compose_node(parent, index)
            size = self._size(node)
            if size > MAX_EXPANDED_BYTES:
                self._refuse(f"larger than {MAX_EXPANDED_BYTES // (1024 * 1024)} MiB once its YAML aliases are expanded (the API server's limit)", event)
            self._sizes[id(node)] = size
            return node
        finally:
            self._path.pop()

    def _refuse(self, problem: str, event: yaml.Event) -> None:
        where = "".join(self._path).lstrip(".") or "the document"
        raise YAMLBoundsError(None, None, f"{where}: {problem}", event.start_mark)

    def _size(self, node: yaml.Node) -> int:
        """Roughly the node's bytes as JSON, each alias counted at its full size."""
        if isinstance(node, yaml.ScalarNode):
            return len(node.value) + 2
        if isinstance(node, yaml.SequenceNode):
            return 2 + sum(self._sizes[id(item)] + 1 for item in node.value)
        return 2 + sum(self._sizes[id(key)] + self._sizes[id(value)] + 2 for key, value in node.value)


def _step(index: Any) -> str:
    """The path element of a node: `.key` for a mapping value, `[i]` for a list item, '' for a key or the root."""
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, yaml.ScalarNode):
        return f".{index.value}"
    return ""


def load_all(text: str) -> list[Any]:
    """Every document in `text`; raises yaml.YAMLError (YAMLBoundsError for the bounds)."""
    return list(yaml.load_all(text, Loader=BoundedLoader))  # noqa: S506 - a SafeLoader subclass
