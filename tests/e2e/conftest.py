"""Fixtures of the kind end-to-end tests: cluster, Knative, operator image, Helm release, diagnostics.

They run only with `--e2e` (make e2e) and only where Docker, kind, kubectl and helm work; otherwise
every e2e test is skipped with the reason. Knobs: AIFN_E2E_REUSE=1 reuses an existing cluster,
AIFN_E2E_KEEP=1 keeps it afterwards, AIFN_E2E_OPERATOR_IMAGE skips the image build,
AIFN_E2E_TRITON_IMAGE overrides the Triton image. On a failure the cluster's state is written
to .aifn/e2e/diagnostics/<test>/ and the path printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import aifunction_operator
from aifunction_operator.config import DEFAULT_TRITON_IMAGE

from .cluster import (
    CLUSTER_NAME,
    ROOT,
    WORKDIR,
    Kube,
    create_cluster,
    delete_cluster,
    dump_diagnostics,
    install_knative,
    missing_requirements,
    prepull,
    run,
    tool,
)

E2E_DIR = Path(__file__).parent
OPERATOR_NAMESPACE = "aifn-system"
RELEASE = "aifn"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With --e2e but without Docker/kind/kubectl/helm, skip the e2e tests saying which is missing."""
    if not config.getoption("--e2e"):
        return  # tests/conftest.py already skips them, with its reason
    ours = [item for item in items if E2E_DIR in Path(str(item.fspath)).parents]
    if not ours:
        return
    reason = missing_requirements()
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"e2e needs Docker and kind: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    """The kind cluster from kind-config.yaml; deleted afterwards unless AIFN_E2E_KEEP=1."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    kubeconfig = WORKDIR / "kubeconfig"
    create_cluster(kubeconfig)
    yield Kube(kubeconfig)
    if os.environ.get("AIFN_E2E_KEEP") != "1":
        delete_cluster()
    else:
        print(f"\nkept kind cluster {CLUSTER_NAME}: export KUBECONFIG={kubeconfig}")


@pytest.fixture(scope="session")
def knative(kube: Kube) -> Kube:
    """Knative Serving + Kourier + Eventing installed and configured."""
    install_knative(kube)
    return kube


@pytest.fixture(scope="session")
def triton_image(kube: Kube) -> str:
    """The Triton image, pulled on the workers before any function starts."""
    image = os.environ.get("AIFN_E2E_TRITON_IMAGE", DEFAULT_TRITON_IMAGE)
    prepull(kube, image)
    return image


@pytest.fixture(scope="session")
def operator_image(kube: Kube) -> str:
    """The operator image built from the Dockerfile and loaded into the kind nodes."""
    image = os.environ.get("AIFN_E2E_OPERATOR_IMAGE") or f"aifunction-operator:e2e-{aifunction_operator.__version__}"
    if not os.environ.get("AIFN_E2E_OPERATOR_IMAGE"):
        run(["docker", "build", "-t", image, str(ROOT)], timeout=1800)
    run([tool("kind") or "kind", "load", "docker-image", image, "--name", CLUSTER_NAME], timeout=900)
    return image


@pytest.fixture(scope="session")
def operator_release(knative: Kube, operator_image: str, triton_image: str) -> Iterator[Kube]:
    """`helm install` of charts/aifunction-operator with the e2e image; waits for the Deployment."""
    repository, tag = operator_image.rsplit(":", 1)
    knative.helm(
        "upgrade", "--install", RELEASE, str(ROOT / "charts" / "aifunction-operator"),
        "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
        "--set", f"operator.tritonImage={triton_image}", "--wait", "--timeout", "5m",
    )
    yield knative
    knative.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, check=False)


@pytest.fixture(autouse=True)
def diagnostics_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed e2e test, write the cluster's state to .aifn/e2e/diagnostics/<test>/."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "kube" not in request.fixturenames:
        return
    kube: Kube = request.getfixturevalue("kube")
    namespaces = sorted({OPERATOR_NAMESPACE, *getattr(request.module, "DIAGNOSE_NAMESPACES", [])})
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = dump_diagnostics(kube, WORKDIR / "diagnostics" / name, namespaces)
    print(f"\ne2e diagnostics written to {path}")
