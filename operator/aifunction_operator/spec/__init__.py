"""Parse and validate an AIFunction (pure): the first thing the operator, `aifn validate/render` and `aifn run` do."""

from .errors import FieldError, InvalidSpec
from .model import AIFunction, AIFunctionSpec, RepositorySource, SourceKind
from .parse import parse_function
from .storage_uri import classify

__all__ = ["AIFunction", "AIFunctionSpec", "FieldError", "InvalidSpec", "RepositorySource", "SourceKind", "classify", "parse_function"]
