"""The CRD, the schema module and the typed model describe the same fields and rules."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from aifunction_operator.spec.crd import build_crd
from aifunction_operator.spec import model as m
from aifunction_operator.spec.rules import RULES
from aifunction_operator.spec.schema import spec_schema

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "aifunctions.aifn.dev.yaml"

# schema object path -> the dataclass that models it
MODELS: dict[str, type] = {
    "": m.AIFunctionSpec,
    "model": m.Model,
    "runtime": m.Runtime,
    "runtime.env[]": m.EnvVar,
    "resources": m.Resources,
    "resources.gpu": m.GPU,
    "placement": m.Placement,
    "placement.tolerations[]": m.Toleration,
    "scaling": m.Scaling,
    "rollout": m.Rollout,
    "triggers": m.Triggers,
    "triggers.http": m.HTTPTrigger,
    "triggers.schedules[]": m.Schedule,
    "scaling.schedules[]": m.PrewarmSchedule,
    "triggers.events[]": m.EventTrigger,
    "triggers.events[].filter": m.EventFilter,
    "handler": m.Handler,
    "handler.configMap": m.ConfigMapKey,
}


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def objects(schema: dict[str, Any], path: str = "") -> dict[str, dict[str, Any]]:
    """Every object schema with declared properties, by dotted path ('[]' for list items)."""
    found = {path: schema} if schema.get("properties") else {}
    for key, sub in schema.get("properties", {}).items():
        sub_path = f"{path}.{key}" if path else key
        found |= objects(sub, sub_path)
        if sub.get("type") == "array":
            found |= objects(sub["items"], sub_path + "[]")
    return found


def test_committed_crd_is_generated_from_the_schema() -> None:
    assert yaml.safe_load(CRD_FILE.read_text()) == build_crd(), "crds/ is stale: run `aifn crd > crds/aifunctions.aifn.dev.yaml`"


def test_every_schema_object_has_a_dataclass_with_the_same_fields() -> None:
    # env[].valueFrom is a Kubernetes EnvVarSource passed through as a dict (EnvVar.value_from).
    schema_objects = {path: obj for path, obj in objects(spec_schema()).items() if ".valueFrom" not in path}
    assert set(schema_objects) == set(MODELS), set(schema_objects) ^ set(MODELS)
    for path, cls in MODELS.items():
        schema_fields = {snake(k) for k in schema_objects[path]["properties"]}
        model_fields = {f.name for f in dataclasses.fields(cls)}
        assert schema_fields == model_fields, f"{path or 'spec'}: schema {sorted(schema_fields ^ model_fields)} differ from {cls.__name__}"


def test_schema_defaults_match_dataclass_defaults() -> None:
    schema_objects = objects(spec_schema())
    checked = 0
    for path, cls in MODELS.items():
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for key, sub in schema_objects[path]["properties"].items():
            if "default" in sub:
                expected = defaults[snake(key)]
                if key == "startupTimeout":
                    assert expected == 900 and sub["default"] == "15m"
                elif key == "leadTime":
                    assert expected == 300 and sub["default"] == "5m"
                else:
                    assert sub["default"] == expected, f"{path}.{key}"
                checked += 1
    assert checked >= 5


def test_every_cel_rule_has_a_python_twin() -> None:
    rules = []

    def walk(node: dict[str, Any]) -> None:
        rules.extend(v["rule"] for v in node.get("x-kubernetes-validations", ()))
        for sub in node.get("properties", {}).values():
            walk(sub)
        if "items" in node:
            walk(node["items"])

    walk(spec_schema())
    assert len(rules) >= 10
    assert set(rules) <= set(RULES), set(rules) - set(RULES)


def test_schema_is_structural() -> None:
    def walk(node: dict[str, Any], path: str) -> None:
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert "description" in node or path.endswith("[]") or "." in path and path.split(".")[-1] in {"apiVersion", "kind", "metadata"}, f"{path} has no description"
        if node.get("type") == "object":
            assert node.get("properties") or "additionalProperties" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}")
        if "items" in node:
            walk(node["items"], path + "[]")

    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    walk(root["properties"]["spec"], "spec")
    walk(root["properties"]["status"], "status")


def test_printer_columns_and_names() -> None:
    crd = build_crd()
    assert crd["spec"]["names"]["shortNames"] == ["aif"] and crd["spec"]["names"]["categories"] == ["ai"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["URL", "Ready", "Reason", "GPUs", "Product", "Traffic", "Min", "Warm", "Max", "Age"]
