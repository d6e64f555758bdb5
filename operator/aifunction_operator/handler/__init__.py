"""The function handler runtime: user code (Lambda-style or KServe-style) in front of Triton.

Import-light on purpose: kserve is imported only by `kserve_server` (the cluster container,
`python -m aifunction_operator.handler`); `aifn run` uses `runtime` with its own server.
"""

from __future__ import annotations

from .errors import BadRequest, HandlerLoadError, ModelInputError, ModelUnavailable

__all__ = ["BadRequest", "HandlerLoadError", "ModelInputError", "ModelUnavailable"]
