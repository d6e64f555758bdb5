"""Validate a plain dict against the OpenAPI subset the CRD uses, and apply its defaults.

This mirrors what the kube-apiserver does with the CRD's structural schema (types, bounds,
enums, patterns, unknown fields, defaults, CEL rules), so `aifn validate` and `aifn run`
reject exactly what the cluster would, with the same messages, before anything is applied.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Callable, Mapping
from typing import Any

from .errors import FieldError
from .patterns import go_matches
from .rules import RULES
from .schema import DNS_LABEL_PATTERN, DURATION_PATTERN, ENV_NAME_PATTERN, MODEL_NAME_PATTERN, QUANTITY_PATTERN

_PATTERN_NAMES = {
    QUANTITY_PATTERN: "a Kubernetes quantity such as 500m, 2 or 4Gi",
    DURATION_PATTERN: "a duration in whole seconds such as 90s, 5m or 1h30m",
    MODEL_NAME_PATTERN: "a Triton model name (letters, digits, '_', '.', '-')",
    ENV_NAME_PATTERN: "an environment variable name",
    DNS_LABEL_PATTERN: "a DNS label (lowercase letters, digits and '-')",
}

Schema = Mapping[str, Any]


def validate(value: Any, schema: Schema, path: str) -> tuple[Any, list[FieldError]]:
    """Return (value with defaults applied, errors). Never raises on bad input."""
    errors: list[FieldError] = []
    result = _check(copy.deepcopy(value), schema, path, errors)
    return result, errors


def _check(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> Any:
    if schema.get("x-kubernetes-int-or-string"):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            errors.append(FieldError(path, f"must be an integer or a string, got {_kind(value)}"))
            return value
        value = str(value)
        _check_string(value, schema, path, errors)
    else:
        checker = _TYPE_CHECKS.get(schema.get("type", ""))
        if checker is not None and not checker(value, schema, path, errors):
            return value
    if schema.get("type") == "object" and isinstance(value, dict):
        value = _check_object(value, schema, path, errors)
    if isinstance(value, (dict, str)):
        for rule in schema.get("x-kubernetes-validations", ()):
            errors.extend(RULES[rule["rule"]](value, path))
    return value


def _member(path: str, key: str) -> str:
    """`path.key`, or `path["key"]` (JSON-escaped) for a key that is empty or holds whitespace or
    control characters, so that a message stays on one line and names the field unambiguously."""
    if key and not any(c.isspace() or not c.isprintable() for c in key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key)}]"


def _check_object(value: dict[str, Any], schema: Schema, path: str, errors: list[FieldError]) -> dict[str, Any]:
    properties: Mapping[str, Schema] = schema.get("properties", {})
    if properties:
        for key in sorted(set(value) - set(properties)):
            hint = difflib.get_close_matches(key, list(properties), n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            errors.append(FieldError(_member(path, str(key)), f"unknown field{suggestion}"))
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                if value[key] is None:
                    errors.append(FieldError(f"{path}.{key}", "must not be null"))
                    continue
                value[key] = _check(value[key], sub, f"{path}.{key}", errors)
    elif "additionalProperties" in schema:
        for key in sorted(value):
            value[key] = _check(value[key], schema["additionalProperties"], _member(path, str(key)), errors)
    for key in schema.get("required", ()):
        if key not in value:
            errors.append(FieldError(f"{path}.{key}", "required field is missing"))
    return value


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list", dict: "an object"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


def _is_object(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> bool:
    if not isinstance(value, dict):
        errors.append(FieldError(path, f"must be an object, got {_kind(value)}"))
        return False
    return True


def _is_array(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> bool:
    if not isinstance(value, list):
        errors.append(FieldError(path, f"must be a list, got {_kind(value)}"))
        return False
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(FieldError(path, f"must have at most {schema['maxItems']} items, got {len(value)}"))
    for index, item in enumerate(value):
        value[index] = _check(item, schema["items"], f"{path}[{index}]", errors)
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(FieldError(path, f"must have at least {schema['minItems']} items, got {len(value)}"))
    if schema.get("x-kubernetes-list-type") == "set":
        scalars = [item for item in value if isinstance(item, (str, int, float, bool))]
        for index, item in enumerate(value):
            if item in scalars[:index]:
                errors.append(FieldError(f"{path}[{index}]", f"duplicate value {item!r}"))
    seen: set[tuple[Any, ...]] = set()
    for index, item in enumerate(value):
        if isinstance(item, dict) and schema.get("x-kubernetes-list-map-keys"):
            key = tuple(item.get(k) for k in schema["x-kubernetes-list-map-keys"])
            if not all(part is None or isinstance(part, (str, int, float)) for part in key):
                continue  # a key that is a list or an object: its type error is reported above
            if key in seen:
                errors.append(FieldError(f"{path}[{index}]", f"duplicate {', '.join(schema['x-kubernetes-list-map-keys'])} {', '.join(map(repr, key))}"))
            seen.add(key)
    return True


def _is_string(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> bool:
    if not isinstance(value, str):
        errors.append(FieldError(path, f"must be a string, got {_kind(value)}"))
        return False
    _check_string(value, schema, path, errors)
    return True


def _check_string(value: str, schema: Schema, path: str, errors: list[FieldError]) -> None:
    if "enum" in schema and value not in schema["enum"]:
        errors.append(FieldError(path, f"must be one of {', '.join(schema['enum'])}, got {value!r}"))
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(FieldError(path, f"must be at least {schema['minLength']} characters long"))
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(FieldError(path, f"must be at most {schema['maxLength']} characters long"))
    if "pattern" in schema and not go_matches(schema["pattern"], value):
        expected = _PATTERN_NAMES.get(schema["pattern"], f"a string matching {schema['pattern']}")
        errors.append(FieldError(path, f"must be {expected}, got {value!r}"))


def _is_integer(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> bool:
    if isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(path, f"must be an integer, got {_kind(value)}"))
        return False
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(FieldError(path, f"must be >= {schema['minimum']}, got {value}"))
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(FieldError(path, f"must be <= {schema['maximum']}, got {value}"))
    return True


def _is_boolean(value: Any, schema: Schema, path: str, errors: list[FieldError]) -> bool:
    if not isinstance(value, bool):
        errors.append(FieldError(path, f"must be true or false, got {_kind(value)}"))
        return False
    return True


_TYPE_CHECKS: dict[str, Callable[[Any, Schema, str, list[FieldError]], bool]] = {
    "object": _is_object,
    "array": _is_array,
    "string": _is_string,
    "integer": _is_integer,
    "boolean": _is_boolean,
}
