"""Fixtures of the e2e suite: the provider (local cluster or kind), its function namespace, diagnostics.

One suite, two providers (tests/e2e/providers.py), chosen on the command line:
- `local` (default, `--e2e-provider=local`): this machine's cluster with Knative, aifn-ingress and
  the operator, through the root conftest's session fixture `local_cluster` (reused when
  `make cluster` runs, else started for the session; skipped where the host cannot run one, a
  failure in CI). Every e2e module then requests `local_cluster` (a usefixtures mark added when the
  module is collected), so the root conftest runs these tests back to back with the cluster tier.
- `kind` (`--e2e` or `--e2e-provider=kind`, make e2e and the GitHub workflow): a kind cluster with
  Knative Serving + Kourier + Eventing and the operator image built with Docker and installed with
  Helm; skipped, with the reason, where Docker, kind, kubectl or helm is missing. Knobs:
  AIFN_E2E_REUSE=1 reuses an existing kind cluster, AIFN_E2E_KEEP=1 keeps it afterwards,
  AIFN_E2E_OPERATOR_IMAGE skips the image build, AIFN_E2E_TRITON_IMAGE overrides the Triton image.

On a failure the cluster's state (objects, events, operator, Knative and gateway logs) is written
to .aifn/e2e/diagnostics/<test>/ and the path printed, for both providers.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import aifunction_operator
from aifunction_operator.triton_command import DEFAULT_TRITON_IMAGE

from support.processes import wait_until

from .cluster import (
    CLUSTER_NAME,
    ROOT,
    WORKDIR,
    Kubectl,
    create_cluster,
    delete_cluster,
    dump_diagnostics,
    install_knative,
    missing_requirements,
    prepull,
    run,
    tool,
)
from .providers import OPERATOR_NAMESPACE, PROVIDERS, RELEASE, Provider, kind_provider, local_provider

E2E_DIR = Path(__file__).parent


def provider_name(config: pytest.Config) -> str:
    """`kind` with --e2e (make e2e, the workflow), else --e2e-provider (default `local`)."""
    chosen = config.getoption("--e2e-provider", default=None)
    if config.getoption("--e2e", default=False):
        if chosen not in (None, "kind"):
            raise pytest.UsageError(f"--e2e runs the kind provider; it contradicts --e2e-provider={chosen}")
        return "kind"
    name = chosen or "local"
    assert name in PROVIDERS, name
    return name


def _ours(path: object) -> bool:
    return E2E_DIR == Path(str(path)).parent or E2E_DIR in Path(str(path)).parents


def pytest_collectstart(collector: pytest.Collector) -> None:
    """With the local provider every e2e module uses `local_cluster`, so the root conftest groups its tests
    with the cluster tier (it reads each test's fixture closure, which marks on the module extend)."""
    if isinstance(collector, pytest.Module) and _ours(collector.path) and provider_name(collector.config) == "local":
        collector.add_marker(pytest.mark.usefixtures("local_cluster"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """kind without Docker/kind/kubectl/helm: skip the e2e tests saying which is missing."""
    if provider_name(config) != "kind":
        return
    ours = [item for item in items if _ours(item.path)]
    if not ours:
        return
    reason = missing_requirements()
    if reason:
        for item in ours:
            item.add_marker(pytest.mark.skip(reason=f"the kind e2e provider needs Docker and kind: {reason}"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


# --- the kind provider --------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kube() -> Iterator[Kubectl]:
    """The kind cluster from kind-config.yaml; deleted afterwards unless AIFN_E2E_KEEP=1."""
    WORKDIR.mkdir(parents=True, exist_ok=True)
    kubeconfig = WORKDIR / "kubeconfig"
    create_cluster(kubeconfig)
    yield Kubectl(kubeconfig)
    if os.environ.get("AIFN_E2E_KEEP") != "1":
        delete_cluster()
    else:
        print(f"\nkept kind cluster {CLUSTER_NAME}: export KUBECONFIG={kubeconfig}")


@pytest.fixture(scope="session")
def knative(kube: Kubectl) -> Kubectl:
    """Knative Serving + Kourier + Eventing installed and configured."""
    install_knative(kube)
    return kube


@pytest.fixture(scope="session")
def triton_image(kube: Kubectl) -> str:
    """The Triton image, pulled on the workers before any function starts."""
    image = os.environ.get("AIFN_E2E_TRITON_IMAGE", DEFAULT_TRITON_IMAGE)
    prepull(kube, image)
    return image


@pytest.fixture(scope="session")
def operator_image(kube: Kubectl) -> str:
    """The operator image built from the Dockerfile and loaded into the kind nodes."""
    image = os.environ.get("AIFN_E2E_OPERATOR_IMAGE") or f"aifunction-operator:e2e-{aifunction_operator.__version__}"
    if not os.environ.get("AIFN_E2E_OPERATOR_IMAGE"):
        run(["docker", "build", "-t", image, str(ROOT)], timeout=1800)
    run([tool("kind") or "kind", "load", "docker-image", image, "--name", CLUSTER_NAME], timeout=900)
    return image


@pytest.fixture(scope="session")
def operator_release(knative: Kubectl, operator_image: str, triton_image: str) -> Iterator[Kubectl]:
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


# --- both providers -----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def provider(request: pytest.FixtureRequest) -> Provider:
    """The cluster under the suite, as chosen on the command line (see the module docstring)."""
    if provider_name(request.config) == "kind":
        return kind_provider(request.getfixturevalue("operator_release"), request.getfixturevalue("triton_image"))
    from support.cluster_session import gateway_url  # noqa: PLC0415 - the root conftest imports it too

    cluster = request.getfixturevalue("local_cluster")  # also a usefixtures of every module (see above)
    return local_provider(cluster.kubeconfig, gateway_url)


@pytest.fixture(scope="module")
def functions(provider: Provider) -> Iterator[tuple[Provider, str]]:
    """A fresh namespace with the PVC `aifn-models` that examples/digits.yaml reads; removed afterwards
    (with its PV) so a reused cluster is left as it was."""
    namespace = f"aifn-e2e-{uuid.uuid4().hex[:6]}"
    kube = provider.kube
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace, "labels": {"aifn.dev/e2e": "true"}}})
    volumes = provider.model_volume(namespace)
    kube.apply(volumes)
    wait_until("the PVC to bind",
               lambda: (kube.get("pvc", "aifn-models", namespace) or {}).get("status", {}).get("phase") == "Bound",
               120, interval=2.0)
    yield provider, namespace
    kube.kubectl("delete", "aifunctions", "--all", "-n", namespace, "--wait=true", "--timeout=120s", timeout=150, check=False)
    kube.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    kube.kubectl("delete", "pv", volumes[0]["metadata"]["name"], "--wait=false", check=False)


@pytest.fixture(autouse=True)
def diagnostics_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed e2e test, write the cluster's state to .aifn/e2e/diagnostics/<test>/."""
    yield
    report = getattr(request.node, "report_call", None)
    if report is None or not report.failed or "provider" not in request.fixturenames:
        return
    provider: Provider = request.getfixturevalue("provider")
    namespaces = {OPERATOR_NAMESPACE, *provider.gateway_logs}
    if "functions" in request.fixturenames:
        namespaces.add(request.getfixturevalue("functions")[1])
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    path = dump_diagnostics(provider.kube, WORKDIR / "diagnostics" / provider.name / name, sorted(namespaces), provider.gateway_logs)
    print(f"\ne2e diagnostics ({provider.name}) written to {path}")
