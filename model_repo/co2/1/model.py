"""Triton python-backend model `co2`: a TorchScript forecaster of monthly Mauna Loa CO2.

Input `history` FP32 [-1, 36] holds the last 36 monthly mean values in ppm, oldest first;
output `forecast` FP32 [-1, 12] the next 12. Each batch Triton forms is executed as one torch
call on the device Triton assigned to this instance (`cuda:<id>` for a GPU instance, else the
CPU). A request with a wrong shape, dtype, or a NaN/inf value gets its own error naming the input
and the expected shape; the others in the batch are still answered.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

INPUT, OUTPUT = "history", "forecast"
CONTEXT = 36
EXPECTED = f"FP32 with shape [-1, {CONTEXT}] (the last {CONTEXT} monthly CO2 values in ppm, oldest first)"

warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)


class TritonPythonModel:
    """Loads model.pt on the assigned device and forecasts whole batches."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("NUM_THREADS", {}).get("string_value", "1"))
        torch.set_num_threads(max(1, threads))
        self.device = _device(args["model_instance_kind"], args["model_instance_device_id"])
        artifact = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(artifact, map_location=self.device).eval()
        with torch.inference_mode():  # the first TorchScript calls optimise the graph
            for _ in range(2):
                self.model(torch.full((2, CONTEXT), 350.0, device=self.device))
        pb_utils.Logger.log_info(f"co2: instance {args['model_instance_name']} loaded {artifact} on {self.device}")

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        batch: list[np.ndarray] = []
        owners: list[int] = []
        for i, request in enumerate(requests):
            history, error = _read_history(request)
            if error is not None:
                responses[i] = pb_utils.InferenceResponse(error=error)
            else:
                batch.append(history)
                owners.append(i)
        if batch:
            stacked = torch.from_numpy(np.concatenate(batch)).to(self.device)
            with torch.inference_mode():
                forecasts = self.model(stacked).cpu().numpy().astype(np.float32)
            offset = 0
            for i, history in zip(owners, batch):
                rows = slice(offset, offset + len(history))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(OUTPUT, forecasts[rows])])
                offset += len(history)
        return responses

    def finalize(self) -> None:
        self.model = None


def _device(kind: str, device_id: str) -> torch.device:
    """`cuda:<id>` for a GPU instance, the CPU otherwise."""
    if kind != "GPU":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise pb_utils.TritonModelException(
            f"Triton assigned GPU {device_id} to this instance but torch {torch.__version__} "
            "cannot use CUDA here; install a CUDA build of torch or set instance_group kind: KIND_CPU"
        )
    return torch.device(f"cuda:{device_id}")


def _read_history(request) -> tuple[np.ndarray | None, pb_utils.TritonError | None]:
    """The request's windows as float32 [n, 36], or an error naming the input and its contract."""
    tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
    if tensor is None:
        return None, _invalid(f"missing input '{INPUT}': expected {EXPECTED}")
    history = tensor.as_numpy()
    if history.dtype != np.float32:
        return None, _invalid(f"input '{INPUT}' has data type {history.dtype}; expected {EXPECTED}")
    if history.ndim != 2 or history.shape[1] != CONTEXT:
        return None, _invalid(f"input '{INPUT}' has shape {list(history.shape)}; expected {EXPECTED}")
    if not np.isfinite(history).all():
        return None, _invalid(f"input '{INPUT}' has NaN or inf values; expected {EXPECTED}")
    return history, None


def _invalid(message: str) -> pb_utils.TritonError:
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
