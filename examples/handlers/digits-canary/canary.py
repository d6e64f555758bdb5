"""A scheduled function: every few minutes, check the digits model on ten digits with known labels.

A PingSource (spec.triggers.schedules) posts a CloudEvent of type dev.knative.sources.ping;
its `data` (the schedule's JSON) arrives as the event body. The handler classifies the ten
reference digits below, logs the result and answers 200 when all are right, 500 otherwise,
so a drifting or broken model shows up in the function's logs and error metrics.
"""

import json
import logging

import numpy as np

log = logging.getLogger("digits-canary")

# One load_digits image per class (the last of each in the dataset), pixel values 0..16.
KNOWN = {
    0: [0, 0, 6, 16, 13, 11, 1, 0, 0, 0, 16, 15, 12, 16, 1, 0, 0, 3, 16, 7, 0, 13, 6, 0, 0, 4, 16, 0, 0, 10, 8, 0, 0, 8, 16, 0, 0, 14, 6, 0, 0, 5, 16, 7, 9, 16, 5, 0, 0, 1, 15, 16, 16, 16, 1, 0, 0, 0, 6, 16, 14, 6, 0, 0],
    1: [0, 0, 6, 12, 12, 6, 0, 0, 0, 0, 11, 16, 16, 13, 0, 0, 0, 0, 12, 16, 16, 8, 0, 0, 0, 0, 8, 16, 16, 12, 0, 0, 0, 2, 13, 16, 16, 12, 0, 0, 0, 1, 16, 16, 16, 10, 0, 0, 0, 0, 16, 16, 16, 8, 0, 0, 0, 0, 2, 11, 10, 4, 0, 0],
    2: [0, 0, 15, 13, 1, 0, 0, 0, 0, 0, 14, 14, 4, 0, 0, 0, 0, 0, 1, 4, 12, 0, 0, 0, 0, 0, 0, 6, 12, 0, 0, 0, 0, 0, 0, 11, 10, 0, 0, 0, 0, 0, 1, 16, 8, 6, 5, 0, 0, 0, 13, 16, 16, 16, 14, 0, 0, 0, 10, 13, 10, 6, 2, 0],
    3: [0, 2, 10, 12, 16, 8, 0, 0, 0, 4, 8, 5, 13, 16, 0, 0, 0, 0, 0, 7, 15, 7, 0, 0, 0, 0, 6, 16, 10, 0, 0, 0, 0, 0, 0, 5, 16, 11, 0, 0, 0, 0, 0, 0, 6, 16, 3, 0, 0, 0, 0, 0, 10, 16, 5, 0, 0, 2, 14, 16, 12, 9, 0, 0],
    4: [0, 0, 0, 3, 15, 4, 0, 0, 0, 0, 4, 16, 12, 0, 0, 0, 0, 0, 12, 15, 3, 4, 3, 0, 0, 7, 16, 5, 3, 15, 8, 0, 0, 13, 16, 13, 15, 16, 2, 0, 0, 12, 16, 16, 16, 13, 0, 0, 0, 0, 4, 5, 16, 8, 0, 0, 0, 0, 0, 1, 16, 4, 0, 0],
    5: [0, 0, 10, 16, 15, 1, 0, 0, 0, 0, 16, 12, 5, 0, 0, 0, 0, 2, 16, 9, 4, 0, 0, 0, 0, 4, 16, 16, 16, 14, 2, 0, 0, 1, 10, 4, 1, 16, 4, 0, 0, 0, 0, 0, 2, 16, 7, 0, 0, 0, 7, 8, 14, 16, 3, 0, 0, 0, 6, 13, 10, 4, 0, 0],
    6: [0, 0, 2, 13, 10, 0, 0, 0, 0, 0, 10, 13, 0, 0, 0, 0, 0, 0, 16, 6, 0, 0, 0, 0, 0, 3, 16, 8, 2, 0, 0, 0, 0, 7, 16, 16, 16, 11, 0, 0, 0, 4, 16, 2, 4, 11, 9, 0, 0, 1, 13, 11, 8, 12, 12, 0, 0, 0, 1, 12, 16, 14, 4, 0],
    7: [0, 1, 10, 16, 15, 2, 0, 0, 0, 1, 12, 13, 16, 4, 0, 0, 0, 0, 0, 0, 16, 8, 0, 0, 0, 0, 7, 11, 16, 13, 8, 0, 0, 8, 16, 16, 16, 16, 6, 0, 0, 2, 10, 16, 9, 0, 0, 0, 0, 0, 3, 16, 4, 0, 0, 0, 0, 0, 10, 15, 2, 0, 0, 0],
    8: [0, 0, 10, 14, 8, 1, 0, 0, 0, 2, 16, 14, 6, 1, 0, 0, 0, 0, 15, 15, 8, 15, 0, 0, 0, 0, 5, 16, 16, 10, 0, 0, 0, 0, 12, 15, 15, 12, 0, 0, 0, 4, 16, 6, 4, 16, 6, 0, 0, 8, 16, 10, 8, 16, 8, 0, 0, 1, 8, 12, 14, 12, 1, 0],
    9: [0, 0, 2, 10, 7, 0, 0, 0, 0, 0, 14, 16, 16, 15, 1, 0, 0, 4, 16, 7, 3, 16, 7, 0, 0, 5, 16, 10, 7, 16, 4, 0, 0, 0, 5, 14, 14, 16, 4, 0, 0, 0, 0, 0, 0, 16, 2, 0, 0, 0, 4, 7, 7, 16, 2, 0, 0, 0, 5, 12, 16, 12, 0, 0],
}


def lambda_handler(event, context):
    settings = json.loads(event.get("body") or "{}")
    minimum = float(settings.get("minimumAccuracy", 1.0))
    ping = event.get("cloudEvent") or {}
    images = np.asarray([KNOWN[k] for k in range(10)], dtype=np.float32).reshape(10, 8, 8)

    outputs = context.infer({"image": images})

    labels = outputs["label"][:, 0]
    accuracy = float(np.mean(labels == np.arange(10)))
    wrong = [{"expected": k, "got": int(labels[k])} for k in range(10) if labels[k] != k]
    report = {"accuracy": accuracy, "wrong": wrong, "scheduledAt": ping.get("time"), "source": ping.get("source")}
    if accuracy < minimum:
        log.error("canary failed: %s", report)
        raise RuntimeError(f"canary accuracy {accuracy:.2f} is below {minimum:.2f}: {wrong}")
    log.info("canary passed: %s", report)
    return report
