"""Validation errors that name the field path and the rule."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class FieldError:
    """One problem with one field, e.g. `spec.scaling.maxReplicas: must be >= ...`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class InvalidSpec(ValueError):
    """An AIFunction that cannot be served; carries every problem found, not just the first."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = sorted(set(errors))
        super().__init__("; ".join(str(e) for e in self.errors))

    def report(self) -> str:
        """One line per problem, for terminals and Kubernetes Events."""
        return "\n".join(str(e) for e in self.errors)
