"""Shared pytest configuration: tiers, opt-in flags and common paths.

Tiers (markers): unit tests need nothing; `cluster` tests run on the local cluster of `make cluster` (tests/cluster); `triton` tests start a real tritonserver from the
nvidia-pytriton wheel; `integration` tests start a real etcd + kube-apiserver +
kube-controller-manager built by `make tools`; `e2e` tests need Docker and kind and run only
with `--e2e`. A tier whose requirement is missing is skipped with the reason printed (-rs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"
MODEL_REPO = ROOT / "model_repo"
SHARED = ROOT.parent / "shared"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", default=False, help="run the kind end-to-end tests")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--e2e"):
        return
    skip = pytest.mark.skip(reason="kind e2e tests run only with --e2e (make e2e); they need Docker and kind")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)
