"""A real Kubernetes cluster on one machine without Docker: `make cluster` and the `cluster` test tier.

layout (where things live) -> host (checks, network) -> images (OCI archives, import) ->
node (containerd, CNI, kubelet configs) -> addons (CoreDNS) -> cluster (starts it all) ->
cleanup (removes it all, also after a killed run).
"""

from .cleanup import Leftovers, clean, find_leftovers
from .cluster import Cluster, ClusterRunning
from .host import HostProblem

__all__ = ["Cluster", "ClusterRunning", "HostProblem", "Leftovers", "clean", "find_leftovers"]
