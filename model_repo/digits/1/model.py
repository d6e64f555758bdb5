"""Triton python-backend model `digits`: a TorchScript CNN over 8x8 load_digits images.

Input `image` FP32 [-1, 8, 8] holds raw pixel values 0..16 (as sklearn's load_digits returns
them); outputs are `probabilities` FP32 [-1, 10] and `label` INT64 [-1, 1]. Each batch Triton
forms is executed as one torch call on the device Triton assigned to this instance
(`cuda:<id>` for a GPU instance, else the CPU). A request with a wrong shape, dtype or value
range gets its own error naming the input and the expected shape; the others in the batch
are still answered.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

INPUT = "image"
IMAGE_SHAPE = (8, 8)
PIXEL_MIN, PIXEL_MAX = 0.0, 16.0
EXPECTED = f"FP32 with shape [-1, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}] (raw load_digits pixels {PIXEL_MIN:g}-{PIXEL_MAX:g})"

warnings.filterwarnings("ignore", message=r".*torch\.jit\..* is deprecated", category=FutureWarning)


class TritonPythonModel:
    """Loads model.pt on the assigned device and classifies whole batches."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("NUM_THREADS", {}).get("string_value", "1"))
        torch.set_num_threads(max(1, threads))
        self.device = _device(args["model_instance_kind"], args["model_instance_device_id"])
        artifact = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(artifact, map_location=self.device).eval()
        with torch.inference_mode():  # the first TorchScript calls optimise the graph
            for _ in range(2):
                self.model(torch.zeros((2, *IMAGE_SHAPE), device=self.device))
        pb_utils.Logger.log_info(
            f"digits: instance {args['model_instance_name']} loaded {artifact} on {self.device}"
        )

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        batch: list[np.ndarray] = []
        owners: list[int] = []
        for i, request in enumerate(requests):
            images, error = _read_images(request)
            if error is not None:
                responses[i] = pb_utils.InferenceResponse(error=error)
            else:
                batch.append(images)
                owners.append(i)
        if batch:
            stacked = torch.from_numpy(np.concatenate(batch)).to(self.device)
            with torch.inference_mode():
                probabilities = self.model(stacked).cpu().numpy().astype(np.float32)
            labels = probabilities.argmax(axis=1).astype(np.int64).reshape(-1, 1)
            offset = 0
            for i, images in zip(owners, batch):
                rows = slice(offset, offset + len(images))
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("probabilities", probabilities[rows]),
                        pb_utils.Tensor("label", labels[rows]),
                    ]
                )
                offset += len(images)
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


def _read_images(request) -> tuple[np.ndarray | None, pb_utils.TritonError | None]:
    """The request's images as float32 [n, 8, 8], or an error naming the input and its contract."""
    tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
    if tensor is None:
        return None, _invalid(f"missing input '{INPUT}': expected {EXPECTED}")
    images = tensor.as_numpy()
    if images.dtype != np.float32:
        return None, _invalid(f"input '{INPUT}' has data type {images.dtype}; expected {EXPECTED}")
    if images.ndim != 3 or tuple(images.shape[1:]) != IMAGE_SHAPE:
        return None, _invalid(f"input '{INPUT}' has shape {list(images.shape)}; expected {EXPECTED}")
    if images.size and not (np.isfinite(images).all() and images.min() >= PIXEL_MIN and images.max() <= PIXEL_MAX):
        return None, _invalid(
            f"input '{INPUT}' has values outside {PIXEL_MIN:g}..{PIXEL_MAX:g} (or NaN/inf); expected {EXPECTED}"
        )
    return images, None


def _invalid(message: str) -> pb_utils.TritonError:
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
