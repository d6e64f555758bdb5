"""The Triton server both the Knative Service renderer and `aifn run` start: its command line and the image the operator renders.

Both places start Triton the same way (explicit model control, strict readiness, exit on
error, admin APIs refused); only the ports and bind addresses differ. A contract test
compares the two.

Admin APIs: Triton serves model load/unload, shared-memory registration, trace and log
settings on the same port as inference, so anyone who reaches a function could unload its
model. `--http-restricted-api` / `--grpc-restricted-protocol` make those groups demand a
header; the header named here contains ':', which no HTTP/1.1 request can carry in a field
name (the first ':' ends the name) and which gRPC refuses in metadata (the stream is reset),
so the groups are refused to every caller. Nothing aifn runs needs them: the probes use
health, the handler health, metadata and inference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# NGC Triton, release 26.08 (chosen for security, see model_repo/README.md "Which Triton"):
# newer than NVIDIA's 2025-2026 Triton bulletins found (fixes from 25.07 on), and a tag seen
# published. Full `-py3` image: no 26.x `-pyt-python-py3` tag was found. It is not the
# server `aifn run` uses (the nvidia-pytriton wheel's Triton 2.51, loopback only).
DEFAULT_TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:26.08-py3"
# The first release with NVIDIA's fixes for its August 2025 Triton bulletin (among them
# CVE-2025-23310/23311 in the HTTP server, CVE-2025-23319/23320/23334 in the python backend);
# a test refuses a default older than this.
FIRST_FIXED_TRITON_RELEASE = (25, 7)
TRITON_IMAGE_UID = 1000  # the NGC image's triton-server user

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

# Triton's API groups that no caller of a function may use (Triton 2.51 names them so).
RESTRICTED_APIS = ("model-repository", "shared-memory", "trace", "logging")
# A header no request can send (see the module docstring); the value is never compared.
UNSENDABLE_HEADER = "aifn:admin-apis-disabled"
RESTRICTION_FLAGS = ("--http-restricted-api", "--grpc-restricted-protocol")


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
    ]
    bind = [f"--http-port={ports.http}", f"--grpc-port={ports.grpc}", f"--metrics-port={ports.metrics}"]
    if ports.address is None:  # the cluster: Triton's own default address, the function's args as given
        return [*args, *bind, *restriction_args(), *extra_args]
    # Locally the ports and the loopback addresses come last: Triton takes the last value of an
    # option, so nothing in `extra_args` (spec.runtime.args: `--http-address=0.0.0.0`, an
    # abbreviation such as `--http-addr`, `--http-port=8000`) can move a replica off loopback
    # or away from the ports the gateway proxies to.
    bind += [f"--http-address={ports.address}", f"--grpc-address={ports.address}", f"--metrics-address={ports.address}"]
    return [*args, *restriction_args(), *extra_args, *bind]


def restriction_args() -> list[str]:
    """The flags that refuse RESTRICTED_APIS over HTTP and gRPC to every caller."""
    setting = f"{','.join(RESTRICTED_APIS)}:{UNSENDABLE_HEADER}=never"
    return [f"{flag}={setting}" for flag in RESTRICTION_FLAGS]
