"""Operator configuration: defaults the renderer applies where a function is silent."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..constants import KNATIVE_NAMESPACE
from ..triton_command import DEFAULT_TRITON_IMAGE, TRITON_IMAGE_UID

DEFAULT_STORAGE_INITIALIZER_IMAGE = "kserve/storage-initializer:v0.21.0"
DEFAULT_HANDLER_IMAGE = "ghcr.io/aifn-dev/aifn-handler:0.1.0"
HANDLER_IMAGE_UID = 1000  # the handler runtime image's user


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the renderer and operator take from their environment, as plain values."""

    triton_image: str = DEFAULT_TRITON_IMAGE
    storage_initializer_image: str = DEFAULT_STORAGE_INITIALIZER_IMAGE
    triton_run_as_user: int = TRITON_IMAGE_UID
    knative_namespace: str = KNATIVE_NAMESPACE
    handler_image: str = DEFAULT_HANDLER_IMAGE
    handler_run_as_user: int = HANDLER_IMAGE_UID

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OperatorConfig:
        """Read AIFN_TRITON_IMAGE, AIFN_STORAGE_INITIALIZER_IMAGE, AIFN_TRITON_UID, AIFN_KNATIVE_NAMESPACE, AIFN_HANDLER_IMAGE."""
        env = os.environ if env is None else env
        return cls(
            triton_image=env.get("AIFN_TRITON_IMAGE", DEFAULT_TRITON_IMAGE),
            storage_initializer_image=env.get("AIFN_STORAGE_INITIALIZER_IMAGE", DEFAULT_STORAGE_INITIALIZER_IMAGE),
            triton_run_as_user=int(env.get("AIFN_TRITON_UID", TRITON_IMAGE_UID)),
            knative_namespace=env.get("AIFN_KNATIVE_NAMESPACE", KNATIVE_NAMESPACE),
            handler_image=env.get("AIFN_HANDLER_IMAGE", DEFAULT_HANDLER_IMAGE),
        )
