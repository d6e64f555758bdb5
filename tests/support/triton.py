"""A real Triton serving one model of a repository for a test scope, with a no-leftover check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aifunction_operator.local.tritonserver import TritonInstall, TritonProcess, process_group_pids

STARTUP_TIMEOUT_S = 180.0


@contextmanager
def serving(server: TritonProcess, what: str) -> Iterator[TritonProcess]:
    """Start `server`, wait until it is ready, stop it after, and fail if any process of it is left."""
    server.start()
    try:
        server.wait_ready(STARTUP_TIMEOUT_S)
        yield server
    finally:
        server.stop(grace=15.0)
        left = process_group_pids(server.pid) if server.pid else []
        assert not left, f"processes left behind by tritonserver ({what}): {left}"


@contextmanager
def serve_model(install: TritonInstall, repository: Path, model: str, log_dir: Path) -> Iterator[TritonProcess]:
    """Serve `model` from `repository` (see `serving`)."""
    with serving(TritonProcess(install, repository, model, log_path=log_dir / f"tritonserver-{model}.log"), model) as server:
        yield server
