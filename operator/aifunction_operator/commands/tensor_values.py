"""Values for a model input, checked against its Triton datatype before anything is sent.

numpy casts silently: 3000000000 as INT32 becomes -1294967296, -1 as UINT8 becomes 255, 1e40
as FP32 becomes inf, and 1e40 as INT32 raises OverflowError. `to_array` refuses every value
that does not fit the datatype, naming it, instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

INTEGER_KINDS = "iu"
FLOAT_KINDS = "f"


class ValueProblem(ValueError):
    """A value that does not fit the input's datatype; the message names it and the range."""


def to_array(data: Any, datatype: str) -> np.ndarray:
    """`data` (nested lists from JSON, or an array) as an array of `datatype`'s numpy type."""
    from tritonclient.utils import triton_to_np_dtype  # noqa: PLC0415 - keep `aifn render` light

    target = triton_to_np_dtype(datatype) if datatype else None
    if target is None:
        raise ValueProblem(f"unknown datatype {datatype!r}")
    target = np.dtype(target)
    if target.kind in ("O", "S", "U"):  # BYTES
        return np.array(data, dtype=np.object_)
    source = np.asarray(data)
    if source.dtype.kind == "O":  # Python integers too large for int64/uint64, or mixed types
        _check_objects(source, target, datatype)
    elif target.kind == "b":
        if source.size and source.dtype.kind != "b":
            raise ValueProblem(f"{datatype} needs true or false, got {_kinds(source)}")
    elif target.kind in INTEGER_KINDS:
        _check_integers(source, target, datatype)
    elif target.kind in FLOAT_KINDS:
        _check_floats(source, target, datatype)
    return source.astype(target)


def _check_integers(source: np.ndarray, target: np.dtype, datatype: str) -> None:
    info = np.iinfo(target)
    if source.size == 0:
        return
    if source.dtype.kind == "b" or source.dtype.kind not in INTEGER_KINDS + FLOAT_KINDS:
        raise ValueProblem(f"{datatype} needs integers, got {_kinds(source)}")
    if source.dtype.kind in FLOAT_KINDS:
        bad = source[~np.isfinite(source) | (source != np.floor(source))]
        if bad.size:
            raise ValueProblem(f"{_first(bad)} is not an integer, and {datatype} holds integers only")
    low, high = source.min(), source.max()
    for value in (low, high):
        if not info.min <= value <= info.max:
            raise ValueProblem(f"{_first(np.array([value]))} does not fit {datatype} ({info.min}..{info.max})")


def _check_floats(source: np.ndarray, target: np.dtype, datatype: str) -> None:
    if source.size == 0:
        return
    if source.dtype.kind == "b" or source.dtype.kind not in INTEGER_KINDS + FLOAT_KINDS:
        raise ValueProblem(f"{datatype} needs numbers, got {_kinds(source)}")
    largest = float(np.finfo(target).max)
    finite = source[np.isfinite(source)] if source.dtype.kind in FLOAT_KINDS else source
    too_big = finite[np.abs(finite.astype(np.float64)) > largest]
    if too_big.size:
        raise ValueProblem(f"{_first(too_big)} does not fit {datatype} (largest magnitude {largest:.8g}); it would become infinity")


def _check_objects(source: np.ndarray, target: np.dtype, datatype: str) -> None:
    """Values numpy could not give one numeric type: check each as a Python number."""
    for value in source.ravel():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueProblem(f"{datatype} needs numbers of one kind, got {value!r}")
        if target.kind in INTEGER_KINDS:
            info = np.iinfo(target)
            if not isinstance(value, int) or not info.min <= value <= info.max:
                raise ValueProblem(f"{value!r} does not fit {datatype} ({info.min}..{info.max})")
        elif target.kind in FLOAT_KINDS and abs(value) > float(np.finfo(target).max):
            raise ValueProblem(f"{value!r} does not fit {datatype}; it would become infinity")


def _kinds(values: np.ndarray) -> str:
    return {"b": "booleans", "U": "strings", "S": "strings", "f": "fractional numbers", "i": "integers", "u": "integers"}.get(
        values.dtype.kind, f"{values.dtype.name} values")


def _first(values: np.ndarray) -> str:
    value = values.ravel()[0].item()
    return repr(int(value)) if isinstance(value, float) and value.is_integer() and abs(value) < 1e16 else repr(value)
