"""A Lambda-style handler that turns "the next N months" into requests to the co2 forecaster.

POST {"steps": N} to forecast the N months after the shipped series (statsmodels' Mauna Loa
CO2, which ends in December 2001), or {"steps": N, "history": [...]} to forecast from your own
monthly values (ppm, oldest first, at least 36; the last 36 are used). The answer is
{"steps": N, "forecast": [N values in ppm], "history": "shipped" | "given", "modelCalls": k},
plus "months" ("2002-01", ...) when the shipped series was used.

The model reads 36 months and forecasts 12. Longer forecasts are made iteratively: each call's
12 months are appended to the window and the model is called again, so months past the 12th
are forecast from forecasts and their error grows (the model card gives the error per step up
to 12 only). N is capped at MAX_STEPS (10 years). Bad input gets a 400 naming the field.
"""

import json
import math

import numpy as np

CONTEXT = 36  # months the model reads
HORIZON = 12  # months it forecasts per call
MAX_STEPS = 120
MAX_HISTORY = 10_000
FIELDS = ("steps", "history")

# The last 36 monthly means of statsmodels.datasets.co2 (ppm), 1999-01..2001-12, as
# model_repo/co2_training.py computes them (tests/serving/handler/test_co2_forecast.py checks).
SHIPPED_TAIL = [
    368.12, 368.85, 369.6, 370.975, 370.84, 370.25, 369.0, 366.7, 364.675, 365.14, 366.65, 367.9,
    369.02, 369.375, 370.4, 371.54, 371.65, 371.625, 369.94, 367.95, 366.54, 366.725, 368.125, 369.44,
    370.175, 371.325, 372.06, 372.775, 373.8, 373.06, 371.3, 369.425, 367.88, 368.05, 369.375, 371.02,
]
SHIPPED_LAST_MONTH = (2001, 12)


class InvalidField(ValueError):
    """A request field that is missing or wrong; the message starts with its name."""


def lambda_handler(event, context):
    try:
        steps, history = _parse(event.get("body") or "")
    except InvalidField as exc:
        return _reply(400, {"error": str(exc)})

    window = np.asarray(SHIPPED_TAIL if history is None else history[-CONTEXT:], dtype=np.float32)
    forecast: list[float] = []
    calls = 0
    while len(forecast) < steps:
        ahead = context.infer({"history": window.reshape(1, CONTEXT)})["forecast"][0]
        calls += 1
        forecast.extend(float(v) for v in ahead)
        window = np.concatenate([window, ahead.astype(np.float32)])[-CONTEXT:]

    answer = {
        "steps": steps,
        "forecast": [round(v, 3) for v in forecast[:steps]],
        "unit": "ppm",
        "history": "shipped" if history is None else "given",
        "modelCalls": calls,
    }
    if history is None:
        answer["months"] = _months_after(SHIPPED_LAST_MONTH, steps)
    return _reply(200, answer)


def _parse(body: str) -> tuple[int, list[float] | None]:
    """(steps, history or None) from the request body, or InvalidField naming what is wrong."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InvalidField(f'body: must be JSON like {{"steps": 12, "history": [...]}}: {exc}') from None
    if not isinstance(payload, dict):
        raise InvalidField('body: must be a JSON object like {"steps": 12, "history": [...]}')
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise InvalidField(f"{unknown[0]}: unknown field; expected {', '.join(FIELDS)}")
    if "steps" not in payload:
        raise InvalidField(f"steps: required, the number of months to forecast (1 to {MAX_STEPS})")
    steps = payload["steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise InvalidField(f"steps: must be an integer from 1 to {MAX_STEPS} months, got {json.dumps(steps)}")
    history = payload.get("history")
    if history is None:
        return steps, None
    if not isinstance(history, list):
        raise InvalidField(f"history: must be a list of monthly values in ppm, oldest first, got {type(history).__name__}")
    if not CONTEXT <= len(history) <= MAX_HISTORY:
        raise InvalidField(f"history: needs {CONTEXT} to {MAX_HISTORY} monthly values (the model reads the last {CONTEXT}), got {len(history)}")
    for i, value in enumerate(history):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidField(f"history[{i}]: must be a finite number (ppm), got {json.dumps(value)}")
    return steps, history


def _months_after(last: tuple[int, int], count: int) -> list[str]:
    """ "YYYY-MM" for the `count` months after `last` (year, month)."""
    year, month = last
    labels = []
    for _ in range(count):
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        labels.append(f"{year:04d}-{month:02d}")
    return labels


def _reply(status, body):
    return {"statusCode": status, "headers": {"Content-Type": "application/json"}, "body": json.dumps(body)}
