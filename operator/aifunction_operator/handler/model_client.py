"""The function's model on Triton, called over HTTP with tritonclient's asyncio client.

One `TritonModel` per process: keep-alive connection pools, the model's metadata fetched
once (input datatypes, output names). Inputs are sent and outputs received as binary
tensors. Infer calls go through `triton_http.TritonInferClient` (client="fast", the
default) or tritonclient's asyncio client (client="tritonclient"); health and metadata
always use tritonclient. Triton's 400 (wrong input name, shape or datatype)
becomes `ModelInputError`; an unreachable server or unready model becomes `ModelUnavailable`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import tritonclient.http as httpclient
import tritonclient.http.aio as aioclient
from tritonclient.utils import InferenceServerException, triton_to_np_dtype

from .errors import ModelInputError, ModelUnavailable
from .triton_http import TritonInferClient

CLIENTS = ("fast", "tritonclient")


@dataclass(frozen=True)
class ModelSignature:
    """Input name -> Triton datatype, and the output names, from the model's metadata."""

    inputs: dict[str, str]
    outputs: tuple[str, ...]


class TritonModel:
    """One model on one Triton HTTP endpoint (host:port), called from one event loop."""

    def __init__(self, url: str, model_name: str, model_version: str = "", *, connections: int = 128,
                 timeout: float = 300.0, client: str = "fast") -> None:
        if client not in CLIENTS:
            raise ValueError(f"Triton client {client!r} is not one of {', '.join(CLIENTS)}")
        self.client_kind = client
        self.url = url
        self.model_name = model_name
        self.model_version = model_version
        self.connections = connections
        self.timeout = timeout
        self._client: aioclient.InferenceServerClient | None = None
        self._fast: TritonInferClient | None = None
        self._signature: ModelSignature | None = None
        self._signature_lock: asyncio.Lock | None = None

    def _get_client(self) -> aioclient.InferenceServerClient:
        if self._client is None:
            self._client = aioclient.InferenceServerClient(
                self.url, conn_limit=self.connections, conn_timeout=self.timeout
            )
        return self._client

    async def ready(self) -> bool:
        """True when Triton answers that this model (version) is ready."""
        try:
            return bool(await self._get_client().is_model_ready(self.model_name, self.model_version))
        except (InferenceServerException, aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return False

    async def signature(self) -> ModelSignature:
        """The model's inputs and outputs (fetched once, then cached)."""
        if self._signature is not None:
            return self._signature
        if self._signature_lock is None:
            self._signature_lock = asyncio.Lock()
        async with self._signature_lock:
            if self._signature is None:
                try:
                    meta = await self._get_client().get_model_metadata(self.model_name, self.model_version)
                except (InferenceServerException, aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    raise ModelUnavailable(f"model {self.model_name!r} on {self.url}: {exc}") from None
                self._signature = ModelSignature(
                    inputs={i["name"]: i["datatype"] for i in meta["inputs"]},
                    outputs=tuple(o["name"] for o in meta["outputs"]),
                )
        return self._signature

    async def infer(self, inputs: Mapping[str, Any], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run the model; `inputs` maps input names to arrays (or nested lists); returns every output."""
        signature = await self.signature()
        if not isinstance(inputs, Mapping) or not inputs:
            raise ModelInputError(
                f"model inputs must be a non-empty mapping of input name to array; "
                f"model {self.model_name!r} takes {sorted(signature.inputs)}"
            )
        arrays = [(name, signature.inputs.get(name, ""), self._array(name, value, signature))
                  for name, value in inputs.items()]
        wanted = tuple(outputs) if outputs else signature.outputs
        unknown = [name for name in wanted if name not in signature.outputs]
        if unknown:
            raise ModelInputError(
                f"model {self.model_name!r} has no output(s) {unknown}; it has {list(signature.outputs)}"
            )
        if self.client_kind == "fast":
            if self._fast is None:
                self._fast = TritonInferClient(self.url, self.model_name, self.model_version,
                                               connections=self.connections, timeout=self.timeout)
            return await self._fast.infer(arrays, wanted)
        request_inputs = []
        for name, datatype, array in arrays:
            tensor = httpclient.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            request_inputs.append(tensor)
        requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in wanted]
        try:
            result = await self._get_client().infer(
                self.model_name, request_inputs, model_version=self.model_version, outputs=requested
            )
        except InferenceServerException as exc:
            if str(exc.status()) == "400":
                raise ModelInputError(f"model {self.model_name!r} rejected the inputs: {exc.message()}") from None
            raise ModelUnavailable(f"model {self.model_name!r}: {exc}") from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise ModelUnavailable(f"model {self.model_name!r} on {self.url} is unreachable: {exc!r}") from None
        return {name: result.as_numpy(name) for name in wanted}

    def _array(self, name: str, value: Any, signature: ModelSignature) -> np.ndarray:
        datatype = signature.inputs.get(name)
        if datatype is None:
            raise ModelInputError(
                f"model {self.model_name!r} has no input {name!r}; its inputs are {sorted(signature.inputs)}"
            )
        try:
            return np.asarray(value, dtype=triton_to_np_dtype(datatype))
        except (TypeError, ValueError) as exc:
            raise ModelInputError(f"input {name!r} cannot be converted to {datatype}: {exc}") from None

    async def close(self) -> None:
        """Close the connection pools."""
        if self._fast is not None:
            fast, self._fast = self._fast, None
            await fast.close()
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()
