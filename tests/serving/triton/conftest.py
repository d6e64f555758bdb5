"""Fixtures that serve the shipped models with a real tritonserver (from nvidia-pytriton).

One server per model for the whole session. Every server is stopped at the end and the test
session fails if any process of its group (the server or a python backend stub) is left.
Without a usable tritonserver the tests skip and say why.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.models import minilm_weights
from support.triton import serve_model

from aifunction_operator.local.tritonserver import (
    TritonInstall,
    TritonProcess,
    TritonUnavailable,
    find_triton,
)

MODEL_REPO = Path(__file__).resolve().parents[3] / "model_repo"


def load_model_repo_module(name: str):  # -> module
    """Import model_repo/<name>.py (build, digits_training) without writing bytecode there."""
    sys.dont_write_bytecode = True
    if str(MODEL_REPO) not in sys.path:
        sys.path.insert(0, str(MODEL_REPO))
    return importlib.import_module(name)


@pytest.fixture(scope="session")
def digits_training():  # -> module
    """model_repo/digits_training.py: the digits split, training and export code."""
    return load_model_repo_module("digits_training")


@pytest.fixture(scope="session")
def co2_training():  # -> module
    """model_repo/co2_training.py: the co2 series, split, training and export code."""
    return load_model_repo_module("co2_training")


@pytest.fixture(scope="session")
def triton_install() -> TritonInstall:
    """The wheel's tritonserver, prepared; skips (with the reason) when there is none."""
    try:
        return find_triton()
    except TritonUnavailable as exc:
        pytest.skip(f"no usable tritonserver on this machine: {exc}")


def _serve(install: TritonInstall, model: str, log_dir: Path) -> Iterator[TritonProcess]:
    with serve_model(install, MODEL_REPO, model, log_dir) as server:
        yield server


@pytest.fixture(scope="session")
def digits_server(triton_install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real Triton serving model_repo/digits."""
    yield from _serve(triton_install, "digits", tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def co2_server(triton_install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real Triton serving model_repo/co2."""
    yield from _serve(triton_install, "co2", tmp_path_factory.mktemp("co2"))


@pytest.fixture(scope="session")
def minilm_server(triton_install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonProcess]:
    """A real Triton serving model_repo/minilm; produces its weights first when missing."""
    minilm_weights()
    yield from _serve(triton_install, "minilm", tmp_path_factory.mktemp("minilm"))
