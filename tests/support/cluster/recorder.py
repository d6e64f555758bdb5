"""The event recorder: a test instrument that receives CloudEvents on the cluster and logs each request.

A plain Pod (the handler image's Python, `python -c RECORDER`) serving HTTP on 8080 behind a Service
`recorder` (port 80): every POST is printed as one JSON line {"at", "path", "headers", "body"} and
answered 202. `at` is the recorder's wall clock when the request arrived (pods and host share the
clock on `make cluster`). Triggers, dead-letter sinks or sources point at the Service with a `uri`
path that tells the deliveries apart; `records(kubectl logs recorder)` reads them back.

Used by tests/cluster/test_handler_events.py and benchmarks/cluster_events.py.
"""

from __future__ import annotations

import json
from typing import Any

from .handler_image import HANDLER_IMAGE

NAME = "recorder"
PORT = 8080

RECORDER = f"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()  # one whole line per request, whatever the concurrency

class Recorder(BaseHTTPRequestHandler):
    def do_POST(self):
        at = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        line = json.dumps({{"at": at, "path": self.path, "headers": {{k.lower(): v for k, v in self.headers.items()}},
                           "body": body.decode("utf-8", "replace")}})
        with LOCK:
            sys.stdout.write(line + "\\n")
            sys.stdout.flush()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("", {PORT}), Recorder).serve_forever()
"""


def recorder(namespace: str) -> list[dict[str, Any]]:
    """The recorder's Pod (on the cluster's CPU worker) and its Service `recorder` (port 80)."""
    labels = {"app": NAME}
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
         "spec": {"containers": [{"name": NAME, "image": HANDLER_IMAGE, "imagePullPolicy": "Never",
                                  "command": ["python", "-c", RECORDER], "ports": [{"containerPort": PORT}],
                                  "readinessProbe": {"tcpSocket": {"port": PORT}, "periodSeconds": 1}}],
                  "nodeSelector": {"aifn.dev/e2e-node": "cpu"}, "terminationGracePeriodSeconds": 1}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": PORT}]}},
    ]


def sink(uri: str) -> dict[str, Any]:
    """A Knative destination (Trigger subscriber, dead-letter sink) naming the recorder, at path `uri`."""
    return {"ref": {"apiVersion": "v1", "kind": "Service", "name": NAME}, "uri": uri}


def trigger_to_recorder(namespace: str, name: str, event_type: str, uri: str, broker: str = "default") -> dict[str, Any]:
    """A Trigger sending the Broker's events of `event_type` to the recorder at path `uri`."""
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"broker": broker, "filter": {"attributes": {"type": event_type}}, "subscriber": sink(uri)}}


def records(logs: str) -> list[dict[str, Any]]:
    """The recorder's requests, in arrival order, from its log (other lines are passed over)."""
    out = []
    for line in logs.splitlines():
        if not line.startswith("{"):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line cut short (the log read while being written)
    return out
