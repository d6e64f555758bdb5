"""The `context` a Lambda-style handler receives: Lambda's attributes plus `infer`.

`context.infer({name: array})` calls the function's Triton model and returns
`{output name: numpy array}`; it replaces the model object Lambda code used to load itself.
Synchronous handlers run in worker threads and `infer` hands the call to the event loop's
pooled keep-alive client; `async def` handlers `await context.ainfer(...)` instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .inline import await_inline, in_inline_code
from .model_client import TritonModel


class LambdaContext:
    """What Lambda's context object offers that makes sense here, and the model call."""

    def __init__(
        self,
        *,
        model: TritonModel,
        loop: asyncio.AbstractEventLoop,
        function_name: str,
        request_id: str,
        deadline: float,
        function_version: str = "$LATEST",
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = f"aifn:function:{function_name}"
        self.memory_limit_in_mb = 0
        self.aws_request_id = request_id
        self.log_group_name = f"/aifn/{function_name}"
        self.log_stream_name = function_name
        self.identity = None
        self.client_context = None
        self.model_name = model.model_name
        self._model = model
        self._loop = loop
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the request times out."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def infer(self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on `inputs` (numpy arrays or nested lists) from a synchronous handler."""
        if in_inline_code():  # the model client's own timeout bounds the wait
            return await_inline(self._model.infer(inputs, outputs))
        if _in_loop_thread(self._loop):
            raise RuntimeError("context.infer() blocks; in an async handler use `await context.ainfer(...)`")
        future = asyncio.run_coroutine_threadsafe(self._model.infer(inputs, outputs), self._loop)
        return future.result(timeout=max(0.001, self._deadline - time.monotonic()))

    async def ainfer(self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model on `inputs` from an `async def` handler."""
        return await self._model.infer(inputs, outputs)


def _in_loop_thread(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
