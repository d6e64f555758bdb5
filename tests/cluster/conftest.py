"""The `cluster` tier: a real cluster on this machine, shared with the e2e suite (support.cluster_session)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from support.cluster_session import ClusterClient

pytestmark = pytest.mark.cluster

__all__ = ["ClusterClient"]


@pytest.fixture(scope="session")
def cluster(local_cluster: ClusterClient) -> ClusterClient:
    """The session's cluster (root conftest: `local_cluster`)."""
    return local_cluster


@pytest.fixture
def namespace(cluster: ClusterClient) -> Iterator[str]:
    """A fresh namespace, deleted (without waiting) after the test."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
    # Pods need the default ServiceAccount, created by the controller manager.
    cluster.wait_for(f"ServiceAccount {name}/default",
                     lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0, 30)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
