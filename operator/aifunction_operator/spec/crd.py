"""Build the AIFunction CustomResourceDefinition from the spec schema (`aifn crd` prints it)."""

from __future__ import annotations

from typing import Any

from ..constants import CATEGORY, CRD_NAME, GROUP, KIND, PLURAL, SHORT_NAME, SINGULAR, VERSION
from .schema import METADATA_RULE, STATUS, spec_schema

PRINTER_COLUMNS = [
    {"name": "URL", "type": "string", "jsonPath": ".status.url"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".spec.resources.gpu.count"},
    {"name": "Product", "type": "string", "jsonPath": ".status.gpuProduct", "priority": 1},
    {"name": "Traffic", "type": "string", "jsonPath": ".status.rollout.split"},
    {"name": "Min", "type": "integer", "jsonPath": ".spec.scaling.minReplicas"},
    {"name": "Warm", "type": "integer", "jsonPath": ".status.prewarm.minReplicas", "priority": 1},
    {"name": "Max", "type": "integer", "jsonPath": ".spec.scaling.maxReplicas"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    """The CRD object, deterministic, ready to dump as YAML."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "aifunction-operator", "app.kubernetes.io/part-of": "aifn"}},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR, "shortNames": [SHORT_NAME], "categories": [CATEGORY]},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "An AI model served as a serverless function: Triton on Knative, scaled on request concurrency.",
                            "required": ["spec"],
                            "x-kubernetes-validations": [METADATA_RULE],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": STATUS,
                            },
                        }
                    },
                }
            ],
        },
    }
