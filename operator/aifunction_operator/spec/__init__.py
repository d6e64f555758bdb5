"""Stage 1 of the pipeline: parse and validate an AIFunction (pure)."""

from .errors import FieldError, InvalidSpec
from .model import AIFunction, AIFunctionSpec, RepositorySource, SourceKind
from .parse import parse_function
from .storage_uri import classify

__all__ = ["AIFunction", "AIFunctionSpec", "FieldError", "InvalidSpec", "RepositorySource", "SourceKind", "classify", "parse_function"]
