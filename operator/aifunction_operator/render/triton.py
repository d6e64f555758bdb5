"""The tritonserver command line, shared by the Knative Service renderer and `aifn run`.

Both places start Triton the same way (explicit model control, strict readiness, exit on
error); only the ports and bind addresses differ. A contract test compares the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002


@dataclass(frozen=True)
class TritonPorts:
    """Where one Triton process listens. `address` None keeps Triton's default (all interfaces)."""

    http: int = HTTP_PORT
    grpc: int = GRPC_PORT
    metrics: int = METRICS_PORT
    address: str | None = None


def triton_args(
    *,
    model_repository: str,
    model_name: str,
    ports: TritonPorts = TritonPorts(),
    extra_args: Sequence[str] = (),
) -> list[str]:
    """Arguments after `tritonserver` that serve exactly `model_name` from `model_repository`."""
    args = [
        f"--model-repository={model_repository}",
        "--model-control-mode=explicit",
        f"--load-model={model_name}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-port={ports.http}",
        f"--grpc-port={ports.grpc}",
        f"--metrics-port={ports.metrics}",
    ]
    if ports.address is not None:
        args += [
            f"--http-address={ports.address}",
            f"--grpc-address={ports.address}",
            f"--metrics-address={ports.address}",
        ]
    args += list(extra_args)
    return args
