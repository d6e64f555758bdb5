"""Property-based tests of `aifn validate` and `aifn render` over generated documents (hypothesis).

- Any text ends in exit 0 or 2; exit 2 prints only lines that name the source and the field
  (or the YAML problem), never a traceback, and no document takes long.
- Every valid function validates, renders the same objects twice in this process and in two
  fresh processes with different hash seeds.

The examples are derandomized (a fixed sequence, the same in CI and here) and bounded so each
test runs in seconds; the counts are printed. The integration tier holds the checks that need
the built tools: ksvc-check on every valid render and the CRD's CEL against the rule twins
(tests/integration/test_spec_fuzz.py).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from support.spec_strategies import functions, yaml_documents

from aifunction_operator.cli import main

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
# A line of exit 2: the source, then a field path or one of the input-level problems.
SOURCE = r"(<stdin>(#\d+)?|-)"
FIELD_LINE = re.compile(SOURCE + r": (apiVersion|kind|metadata|spec|<document>)([.\[:]|: )")
INPUT_LINE = re.compile(SOURCE + r": (not valid YAML|refused|no AIFunction found|larger than)")


def cli(*args: str, stdin: str) -> tuple[int, str, str, float]:
    """`aifn ARGS` in this process with `stdin`; (exit code, stdout, stderr, seconds). Any exception propagates."""
    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with mock.patch.object(sys, "stdin", io.StringIO(stdin)), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue(), time.monotonic() - started


def check_outcome(command: tuple[str, ...], text: str) -> int:
    code, out, err, seconds = cli(*command, stdin=text)
    assert code in (0, 2), (code, err[-2000:])
    assert seconds < 10, f"{command} took {seconds:.1f}s"
    assert "Traceback" not in err
    if code == 2:
        assert out == "" and err.strip(), (out, err)
        lines = err.rstrip("\n").split("\n")
        for line in lines:
            assert FIELD_LINE.match(line) or INPUT_LINE.match(line), f"a line naming no field: {line!r}\nall: {err[:3000]}"
    return code


COUNTS: dict[str, dict[str, int]] = {}


def tally(test: str, outcome: str) -> None:
    COUNTS.setdefault(test, {}).setdefault(outcome, 0)
    COUNTS[test][outcome] += 1


@pytest.fixture(autouse=True)
def _print_counts(request: pytest.FixtureRequest):  # noqa: ANN202
    yield
    name = request.node.name
    if name in COUNTS:
        print(f"\n{name}: {sum(COUNTS[name].values())} examples (derandomized), outcomes {COUNTS[name]}")


COMMANDS = [("validate", "-f", "-"), ("render", "-f", "-", "-o", "json"), ("render", "-f", "-")]


@pytest.mark.slow
def test_any_document_exits_0_or_2_naming_the_field(request: pytest.FixtureRequest) -> None:
    name = request.node.name

    @settings(max_examples=250, **SETTINGS)
    @given(yaml_documents())
    def check(text: str) -> None:
        codes = {check_outcome(command, text) for command in COMMANDS}
        # render refuses a local repository that validate accepts (it works only with `aifn run`).
        tally(name, "exit " + "/".join(map(str, sorted(codes))))

    check()


@pytest.mark.slow
def test_valid_functions_validate_and_render_deterministically(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    name = request.node.name
    documents: list[dict[str, Any]] = []
    renders: list[str] = []

    @settings(max_examples=150, **SETTINGS)
    @given(functions(valid=True))
    def check(function: dict[str, Any]) -> None:
        text = yaml.safe_dump(function, sort_keys=False)
        code, out, err, _ = cli("validate", "-f", "-", stdin=text)
        assert code == 0, f"a valid function was refused:\n{err}\n{text}"
        first = cli("render", "-f", "-", stdin=text)
        second = cli("render", "-f", "-", stdin=text)
        assert first[0] == 0, f"render refused a function validate accepted:\n{first[2]}\n{text}"
        assert first[1] == second[1], "two renders of one function differ"
        tally(name, "valid")
        documents.append(function)
        renders.append(first[1])

    check()
    # Fresh processes with different hash seeds render every function to the same bytes.
    stream = yaml.safe_dump_all(documents, sort_keys=False)
    expected = "---\n".join(renders)  # safe_dump_all separates documents with ---
    for seed in ("1", "4242"):
        result = subprocess.run([sys.executable, "-m", "aifunction_operator", "render", "-f", "-"], input=stream,
                                capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed})
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout == expected, f"PYTHONHASHSEED={seed} rendered differently"
