"""The function handler runtime: user code (Lambda-style or KServe-style) in front of Triton.

Import-light on purpose: kserve is imported only by `kserve_server` (the cluster container,
`python -m aifunction_operator.handler`); `aifn run` uses `invoker` with its own server.
The contract user code implements (`LambdaFunction`, `KServeTransformer`, the context) is in `api`,
exported here with the errors user code may raise: this is the package's public handler API.
"""

from __future__ import annotations

from .api import Event, HandlerContext, Headers, KServeTransformer, LambdaFunction, ModelInputs, ModelOutputs, ProxyResponse
from .errors import BadRequest, HandlerLoadError, ModelInputError, ModelUnavailable

__all__ = [
    "BadRequest", "Event", "HandlerContext", "HandlerLoadError", "Headers", "KServeTransformer", "LambdaFunction",
    "ModelInputError", "ModelInputs", "ModelOutputs", "ModelUnavailable", "ProxyResponse",
]
