"""A Lambda-style handler for the digits model, ported from a handler that loaded the model itself.

POST a JSON body {"pixels": [64 numbers 0..16]} (or an 8x8 nested list) and get
{"label": 7, "confidence": 0.99}; {"images": [[...64...], ...]} classifies several at once.
The only change from the Lambda original: `model(x)` became `context.infer({"image": x})`,
which calls the function's Triton model; nothing is loaded per request.
"""

import json

import numpy as np

PIXELS = 64
PIXEL_MAX = 16.0


def lambda_handler(event, context):
    try:
        payload = json.loads(event.get("body") or "")
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: JSON nested too deeply
        return _reply(400, {"error": f"body must be JSON: {exc}"})
    if not isinstance(payload, dict):
        return _reply(400, {"error": 'body must be a JSON object with "pixels" or "images"'})
    single = "pixels" in payload
    raw = [payload["pixels"]] if single else payload.get("images")
    if not isinstance(raw, list) or not raw:
        return _reply(400, {"error": 'body needs "pixels" (64 numbers) or "images" (a list of them)'})
    try:
        images = np.asarray(raw, dtype=np.float32).reshape(len(raw), 8, 8)
    except (TypeError, ValueError):
        return _reply(400, {"error": f"each image must be {PIXELS} numbers (or 8x8) between 0 and {PIXEL_MAX:g}"})
    if images.min() < 0 or images.max() > PIXEL_MAX:
        return _reply(400, {"error": f"pixel values must be between 0 and {PIXEL_MAX:g}"})

    outputs = context.infer({"image": images})

    labels = outputs["label"][:, 0]
    confidences = outputs["probabilities"][np.arange(len(labels)), labels]
    predictions = [{"label": int(l), "confidence": round(float(c), 4)} for l, c in zip(labels, confidences)]
    return _reply(200, predictions[0] if single else {"predictions": predictions})


def _reply(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
