"""Checks of an AIFunction's metadata that the API server makes: name, namespace, labels, annotations.

Each returns field-named errors for what the API server (or kubectl, decoding into ObjectMeta)
would refuse, so that `aifn validate` never accepts a document the cluster turns away and bad
input never reaches code that assumes a string or a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import FieldError
from .patterns import go_matches
from .schema import DNS_LABEL_PATTERN

MAX_NAME_LENGTH = 57  # Knative names revisions <name>-00001, which must fit a 63-character label
NAMESPACE_PATTERN = DNS_LABEL_PATTERN.replace("[a-z]", "[a-z0-9]", 1)  # DNS-1123 label
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
TOTAL_ANNOTATION_BYTES = 256 * 1024  # apimachinery's TotalAnnotationSizeLimitB: keys and values, UTF-8


def name_errors(name: Any) -> list[FieldError]:
    if not isinstance(name, str) or not name:
        return [FieldError("metadata.name", "required field is missing" if name in (None, "") else f"must be a string, got {_kind(name)}")]
    if len(name) > MAX_NAME_LENGTH or not go_matches(DNS_LABEL_PATTERN, name):
        return [FieldError("metadata.name", f"must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter) of at most {MAX_NAME_LENGTH} characters, got {name!r}")]
    return []


def namespace_errors(namespace: Any) -> list[FieldError]:
    if namespace is None:
        return []
    if not isinstance(namespace, str) or len(namespace) > 63 or not go_matches(NAMESPACE_PATTERN, namespace):
        return [FieldError("metadata.namespace", f"must be a DNS-1123 label (lowercase letters, digits, '-') of at most 63 characters, got {namespace!r}")]
    return []


def string_map_errors(value: Any, path: str) -> list[FieldError]:
    """Labels and annotations: a mapping of strings to strings (null means none)."""
    if value is None:
        return []
    if not isinstance(value, Mapping):
        return [FieldError(path, f"must be an object of strings, got {_kind(value)}")]
    errors = [FieldError(f"{path}.{key}", "keys must be strings") for key in value if not isinstance(key, str)]
    errors += [FieldError(f"{path}.{key}", f"must be a string, got {_kind(item)}") for key, item in value.items() if not isinstance(item, str)]
    return errors


def label_errors(labels: Any) -> list[FieldError]:
    errors = string_map_errors(labels, "metadata.labels")
    if errors or not labels:
        return errors
    return [FieldError(f"metadata.labels.{key}", f"must be at most 63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit, got {item!r}")
            for key, item in labels.items() if len(item) > 63 or not go_matches(LABEL_VALUE_PATTERN, item)]


def annotation_errors(annotations: Any) -> list[FieldError]:
    errors = string_map_errors(annotations, "metadata.annotations")
    if errors or not annotations:
        return errors
    size = annotation_bytes(annotations)
    if size > TOTAL_ANNOTATION_BYTES:
        return [FieldError("metadata.annotations", f"must be at most {TOTAL_ANNOTATION_BYTES} bytes in total (keys and values), got {size}")]
    return []


def annotation_bytes(annotations: Mapping[str, str]) -> int:
    """What the API server counts against TOTAL_ANNOTATION_BYTES."""
    return sum(len(key.encode()) + len(value.encode(errors="surrogatepass")) for key, value in annotations.items())


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
