"""Handlers the handler benchmark serves (benchmarks/handler_bench.py); not examples to copy.

- `forward`: the trivial Lambda handler: JSON pixels in, context.infer, label + confidence out.
- `forward_async`: the same as `async def` with `await context.ainfer`.
- `noop`: answers without calling the model (the runtime's own floor).
- `seed`: the pattern Lambda code is ported from: load the TorchScript model on every request.
"""

import json
import os

import numpy as np

MODEL_PT = os.environ.get("BENCH_MODEL_PT", "")


def _pixels(event):
    return np.asarray(json.loads(event["body"])["pixels"], dtype=np.float32).reshape(1, 8, 8)


def _reply(label, confidence):
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"label": label, "confidence": confidence})}


def forward(event, context):
    out = context.infer({"image": _pixels(event)})
    label = int(out["label"][0, 0])
    return _reply(label, float(out["probabilities"][0, label]))


async def forward_async(event, context):
    out = await context.ainfer({"image": _pixels(event)})
    label = int(out["label"][0, 0])
    return _reply(label, float(out["probabilities"][0, label]))


def noop(event, context):
    _pixels(event)
    return _reply(0, 1.0)


def seed(event, context):
    import torch

    torch.set_num_threads(1)
    model = torch.jit.load(MODEL_PT)  # the classic mistake: the model is loaded per request
    model.eval()
    with torch.no_grad():
        probabilities = model(torch.from_numpy(_pixels(event))).numpy()
    label = int(probabilities[0].argmax())
    return _reply(label, float(probabilities[0, label]))
