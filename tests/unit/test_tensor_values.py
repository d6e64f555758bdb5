"""`aifn invoke`'s value conversion: every value that does not fit the input's datatype is refused, naming it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from aifunction_operator.commands.tensor_values import ValueProblem, to_array

REFUSED: list[tuple[Any, str, str]] = [
    ([3000000000], "INT32", "3000000000 does not fit INT32 (-2147483648..2147483647)"),
    ([-2147483649], "INT32", "-2147483649 does not fit INT32"),
    ([1e40], "INT32", "1e+40 does not fit INT32"),
    ([10**30], "INT64", "does not fit INT64"),
    ([-1], "UINT8", "-1 does not fit UINT8 (0..255)"),
    ([256], "UINT8", "256 does not fit UINT8"),
    ([1.5], "INT32", "1.5 is not an integer"),
    ([float("nan")], "INT32", "nan is not an integer"),
    ([True], "INT32", "INT32 needs integers, got booleans"),
    (["a"], "INT32", "INT32 needs integers, got strings"),
    ([1e40], "FP32", "1e+40 does not fit FP32"),
    ([-1e39], "FP32", "does not fit FP32"),
    ([70000], "FP16", "70000 does not fit FP16"),
    ([1], "BOOL", "BOOL needs true or false, got integers"),
    ([10**400], "FP64", "does not fit FP64"),
    ([1], "NOPE", "unknown datatype 'NOPE'"),
]
ACCEPTED: list[tuple[Any, str, list[Any]]] = [
    ([2147483647, -2147483648], "INT32", [2147483647, -2147483648]),
    ([0, 255], "UINT8", [0, 255]),
    ([3.0], "INT64", [3]),
    ([1.5, 3e38], "FP32", [1.5, np.float32(3e38)]),
    ([float("inf")], "FP32", [float("inf")]),
    ([65504], "FP16", [65504]),
    ([[True, False]], "BOOL", [[True, False]]),
    (["a", "b"], "BYTES", ["a", "b"]),
    ([], "INT32", []),
]


@pytest.mark.parametrize(("data", "datatype", "fragment"), REFUSED, ids=[f"{d}-{t}" for d, t, _ in REFUSED])
def test_values_that_do_not_fit_are_refused(data: Any, datatype: str, fragment: str) -> None:
    with pytest.raises(ValueProblem, match=None) as refused:
        to_array(data, datatype)
    assert fragment in str(refused.value)


@pytest.mark.parametrize(("data", "datatype", "expected"), ACCEPTED, ids=[f"{d}-{t}" for d, t, _ in ACCEPTED])
def test_values_that_fit_arrive_unchanged(data: Any, datatype: str, expected: list[Any]) -> None:
    assert to_array(data, datatype).tolist() == expected


def test_npy_arrays_are_checked_too() -> None:
    with pytest.raises(ValueProblem, match="3000000000 does not fit INT32"):
        to_array(np.array([1, 3_000_000_000], dtype=np.int64), "INT32")
