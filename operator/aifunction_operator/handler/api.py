"""The handler API: what the code named by `spec.handler.entrypoint` implements, and what it gets.

This module documents a contract; the runtime does not require user code to import it or to
subclass anything (the checks are structural, as `typing.Protocol` means). Two styles:

- `module:function`, a **Lambda-style** function: `LambdaFunction`, called as
  `handler(event, context)` with an API-Gateway-proxy `Event` and a `HandlerContext`.
- `module:Class`, a **KServe-style** transformer: `KServeTransformer`, a class instantiated once
  with no arguments, whose `load()` runs once, and whose `preprocess(body, headers)` and
  `postprocess(outputs, headers)` wrap every model call (KServe's `Model` pattern, with the
  model call itself made by the runtime).

Every handler callable (the function, `preprocess`, `postprocess`) may be a plain `def` or an
`async def`: a plain one runs on a worker thread (`AIFN_HANDLER_THREADS`), an `async def` one on
the event loop. `load()` and the constructor are always called synchronously.

Errors: raise `aifunction_operator.handler.BadRequest` to answer 400 with its message (kserve's
`InvalidInput` is a 400 in the cluster's runtime only; under `aifn run` it is a 500); inputs Triton rejects are 400 (`ModelInputError`), Triton unreachable is
503 (`ModelUnavailable`), any other exception is a 500 whose body names the exception type and
message (the traceback goes to the log only). Code that cannot be imported, a function that does
not take two arguments, a class with neither `preprocess` nor `postprocess`, or a failing
constructor or `load()` stop the process with `HandlerLoadError` (exit 2).

`aifunction_operator.handler.loader` is what enforces the contract at start; docs/handlers.md
describes the events, the context and the errors in full, and docs/public-surface.md lists this
module among the stable API of v1alpha1.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

if TYPE_CHECKING:  # numpy only for the annotations: importing the handler API stays light
    import numpy as np

    Array = np.ndarray
else:
    Array = Any

Event = dict[str, Any]
"""A Lambda-style event: API Gateway's REST proxy event (payload 1.0).

Keys: `httpMethod`, `path`, `resource`, `headers` (lower-case names), `multiValueHeaders`,
`queryStringParameters`, `multiValueQueryStringParameters`, `pathParameters`, `stageVariables`,
`body` (a string, or base64 when `isBase64Encoded` is true, or None), `isBase64Encoded`,
`requestContext` (`requestId`, `httpMethod`, `path`, `stage` "aifn", `requestTimeEpoch`,
`identity.sourceIp`, `identity.userAgent`), and `cloudEvent` (the CloudEvent's attributes)
when the request carries a CloudEvent, whose data is then the `body`.
"""

Headers = Mapping[str, str]
"""A KServe-style request's headers, lower-case names; a CloudEvent's attributes as `ce-<name>`."""

ModelInputs = Mapping[str, Any]
"""`{model input name: numpy array or nested list}`; each converted to the input's declared datatype."""

ModelOutputs = dict[str, Array]
"""`{model output name: numpy array}`, as the model returned them."""


class ProxyResponse(TypedDict, total=False):
    """A Lambda proxy response. A returned mapping with `statusCode` is one; any other value is
    sent as a 200 JSON body (numpy arrays and scalars as lists and numbers).

    `statusCode` (an int 100-599) is the only key needed. `body`: a string, bytes, base64 text
    with `isBase64Encoded: true`, or any JSON-serializable value (sent as JSON). Header names
    are lower-cased; the content type defaults to `application/json`.
    """

    statusCode: int
    headers: Mapping[str, str]
    multiValueHeaders: Mapping[str, Sequence[str]]
    body: Any
    isBase64Encoded: bool


@runtime_checkable
class HandlerContext(Protocol):
    """The `context` a Lambda-style function receives: Lambda's attributes plus the model call."""

    function_name: str
    """The AIFunction's name (`AIFN_FUNCTION_NAME`)."""
    function_version: str
    """Always `$LATEST`."""
    invoked_function_arn: str
    """`aifn:function:<function_name>`."""
    memory_limit_in_mb: int
    """Always 0 (the container's limit is Kubernetes')."""
    aws_request_id: str
    """The request's `x-request-id`, or a generated UUID; also `event["requestContext"]["requestId"]`."""
    log_group_name: str
    log_stream_name: str
    model_name: str
    """The Triton model the function calls."""

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the request times out (`spec.timeoutSeconds`, 504 after)."""
        ...

    def infer(self, inputs: ModelInputs, outputs: Sequence[str] | None = None) -> ModelOutputs:
        """Run the model from a synchronous (`def`) handler: all outputs, or those named.

        Blocks the calling worker thread; raises `RuntimeError` when called on the event loop
        (from an `async def` handler: use `ainfer`). Raises `ModelInputError` (400) when Triton
        rejects the inputs and `ModelUnavailable` (503) when Triton cannot be reached.
        """
        ...

    async def ainfer(self, inputs: ModelInputs, outputs: Sequence[str] | None = None) -> ModelOutputs:
        """The same as `infer`, awaited from an `async def` handler."""
        ...


@runtime_checkable
class LambdaFunction(Protocol):
    """`entrypoint: module:function`: a function called once per request (or event).

    It must accept two positional arguments; extra parameters need defaults. It may be an
    `async def` (then it must `await context.ainfer(...)`, not call `context.infer`). An optional
    `routes` attribute (API Gateway route keys: `handler.routes = ["GET /v1/models/{model}"]`)
    claims paths beyond `POST /` and `POST /invoke`; the event then carries the route's template
    as `resource` and its values as `pathParameters`.
    """

    def __call__(self, event: Event, context: HandlerContext, /) -> ProxyResponse | Any | Awaitable[ProxyResponse | Any]:
        """Handle one request.

        Args:
            event: the API-Gateway-proxy `Event` (with `cloudEvent` for a CloudEvent, a
                schedule's ping included).
            context: the `HandlerContext`; `context.infer(...)` calls the function's model.

        Returns:
            A `ProxyResponse` (a mapping with `statusCode`), or any JSON-serializable value,
            sent as a 200 JSON body. From an `async def`, the same, awaited.
        """
        ...


@runtime_checkable
class KServeTransformer(Protocol):
    """`entrypoint: module:Class`: a KServe-style transformer around the model call.

    Per request: `preprocess(body, headers)` -> the model is called with its result ->
    `postprocess(outputs, headers)` -> the answer. The class is instantiated once per process
    with no arguments. `load`, `preprocess` and `postprocess` are each optional, but a class
    needs at least one of `preprocess` and `postprocess`: without `preprocess` the JSON body
    must itself be `{model input name: array}`; without `postprocess` the model's outputs are
    the answer (as JSON). The request must be JSON (`application/json`, or a CloudEvent with
    JSON data); anything else is a 400.
    """

    def load(self) -> Any:
        """Called once, synchronously, after the constructor and before the first request.

        Load what every request needs (tokenizers, label maps). The return value is ignored; an
        exception stops the process (`HandlerLoadError`). Must not be an `async def`.
        """
        ...

    def preprocess(self, body: Any, headers: Headers, /) -> ModelInputs | Awaitable[ModelInputs]:
        """Turn the request into the model's inputs.

        Args:
            body: the parsed JSON body (or the CloudEvent's JSON data).
            headers: the request's headers, lower-case; a CloudEvent's attributes as `ce-*`.

        Returns:
            `{model input name: array or nested list}` (a mapping: anything else is a 500).
            May be an `async def`. Raise `BadRequest` to answer 400.
        """
        ...

    def postprocess(self, outputs: ModelOutputs, headers: Headers, /) -> ProxyResponse | Any | Awaitable[ProxyResponse | Any]:
        """Turn the model's outputs into the answer.

        Args:
            outputs: `{model output name: numpy array}`.
            headers: the same headers `preprocess` got.

        Returns:
            Any JSON-serializable value (numpy arrays and scalars included), sent as a 200; or
            a `ProxyResponse` mapping with `statusCode`. May be an `async def`.
        """
        ...


Handler = LambdaFunction | type[KServeTransformer]
"""What `spec.handler.entrypoint` may name: a Lambda-style function or a KServe-style class."""

__all__ = [
    "Event",
    "Handler",
    "HandlerContext",
    "Headers",
    "KServeTransformer",
    "LambdaFunction",
    "ModelInputs",
    "ModelOutputs",
    "ProxyResponse",
]
