"""Shared pytest configuration: tiers, opt-in flags and common paths.

Tiers (markers): unit tests need nothing; `cluster` tests run on the local cluster of `make cluster` (tests/cluster); `triton` tests start a real tritonserver from the
nvidia-pytriton wheel; `integration` tests start a real etcd + kube-apiserver +
kube-controller-manager built by `make tools`; `e2e` tests need Docker and kind and run only
with `--e2e`. A tier whose requirement is missing is skipped with the reason printed (-rs).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster_session import ClusterClient, SessionCluster

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"
MODEL_REPO = ROOT / "model_repo"
SHARED = ROOT.parent / "shared"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--e2e", action="store_true", default=False, help="run the kind end-to-end tests")


def _group_cluster_tests(items: list[pytest.Item]) -> None:
    """Run the tests that use the session's cluster back to back (it starts once, stops after the last);
    tests between them that do not use it (e.g. test_lifecycle, which needs no cluster up) go first."""
    uses = ["local_cluster" in getattr(item, "fixturenames", ()) for item in items]
    if True not in uses:
        return
    last = len(uses) - 1 - uses[::-1].index(True)
    head = [item for item, used in zip(items[:last + 1], uses) if not used]
    users = [item for item, used in zip(items, uses) if used]
    items[:] = head + users + items[last + 1:]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _group_cluster_tests(items)
    if config.getoption("--e2e"):
        return
    skip = pytest.mark.skip(reason="kind e2e tests run only with --e2e (make e2e); they need Docker and kind")
    for item in items:
        if item.get_closest_marker("e2e") is not None:
            item.add_marker(skip)


_SESSION_CLUSTER = SessionCluster()


@pytest.fixture(scope="session")
def local_cluster() -> ClusterClient:
    """The local cluster with Knative, the networking layer and the operator (support.cluster_session)."""
    return _SESSION_CLUSTER.get()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the session's cluster after the last test that uses it, so later tiers have the machine."""
    if _SESSION_CLUSTER.started is None:
        return
    if nextitem is None or "local_cluster" not in getattr(nextitem, "fixturenames", ()):
        _SESSION_CLUSTER.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_CLUSTER.close()
