"""An event-driven function: classify scanned digits published to a Knative Eventing broker.

A Trigger (spec.triggers.events) subscribes the function to CloudEvents of type
`dev.aifn.digits.scanned` on the broker; each event's data is {"scanId": ..., "pixels":
[64 numbers 0..16]}. The handler answers with the label as a reply CloudEvent of type
`dev.aifn.digits.classified` (binary mode: ce-* headers, JSON data), which the broker publishes
like any other event, so other functions can subscribe to the results. The event's attributes
(id, source, type, time, extensions) are in event["cloudEvent"]; binary and structured content
modes arrive the same way.
"""

import json

import numpy as np


def lambda_handler(event, context):
    attributes = event.get("cloudEvent")
    if attributes is None:
        return {"statusCode": 400, "body": json.dumps({"error": "expected a CloudEvent (ce-* headers or application/cloudevents+json)"})}
    try:
        data = json.loads(event.get("body") or "")
        pixels = np.asarray(data["pixels"], dtype=np.float32).reshape(1, 8, 8)
    except (ValueError, KeyError, TypeError) as exc:
        return {"statusCode": 400, "body": json.dumps({"error": f"event data must be {{\"pixels\": [64 numbers]}}: {exc}"})}

    outputs = context.infer({"image": pixels})

    label = int(outputs["label"][0, 0])
    result = {
        "scanId": data.get("scanId"),
        "eventId": attributes["id"],
        "eventSource": attributes["source"],
        "label": label,
        "confidence": round(float(outputs["probabilities"][0, label]), 4),
    }
    print(json.dumps(result), flush=True)  # the function's log is the audit trail here
    return {
        "statusCode": 200,
        "headers": {  # a reply event: the broker delivers it to Triggers on its type
            "ce-specversion": "1.0",
            "ce-id": f"{attributes['id']}-classified",
            "ce-source": f"/aifn/functions/{context.function_name}",
            "ce-type": "dev.aifn.digits.classified",
            "content-type": "application/json",
        },
        "body": json.dumps(result),
    }
