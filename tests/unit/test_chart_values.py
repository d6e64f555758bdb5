"""The chart's values.yaml, values.schema.json and Chart.yaml agree, and every key is documented.

No helm needed: `helm lint`/`helm template`/`helm install` run in tests/integration/test_chart.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import aifunction_operator

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "aifunction-operator"
VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
HELM_ONLY_KEYS = {"global"}  # Helm passes `global` to subcharts; it is not ours to document


def _validator() -> jsonschema.Draft7Validator:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    return jsonschema.Draft7Validator(SCHEMA)


def _schema_at(path: tuple[str, ...]) -> dict[str, Any]:
    node = SCHEMA
    for key in path:
        node = node["properties"][key]
        if "$ref" in node:
            node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _is_section(path: tuple[str, ...]) -> bool:
    """A section groups documented keys (the schema lists its properties); anything else is a value."""
    return "properties" in _schema_at(path)


def _documented_keys(node: yaml.MappingNode, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], int]]:
    """(key path, line) of every key that values.yaml must document: sections' members, recursively."""
    for key_node, value_node in node.value:
        key_path = (*path, key_node.value)
        yield key_path, key_node.start_mark.line
        if isinstance(value_node, yaml.MappingNode) and _is_section(key_path):
            yield from _documented_keys(value_node, key_path)


def test_values_yaml_is_valid_against_its_schema() -> None:
    errors = sorted(_validator().iter_errors(VALUES), key=str)
    assert not errors, [f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors]


def test_every_values_key_is_in_the_schema_and_every_schema_key_in_values() -> None:
    root = yaml.compose(VALUES_TEXT)
    in_values = {path for path, _ in _documented_keys(root)}
    in_schema: set[tuple[str, ...]] = set()

    def walk(path: tuple[str, ...]) -> None:
        for key in _schema_at(path).get("properties", {}):
            if key in HELM_ONLY_KEYS and not path:
                continue
            in_schema.add((*path, key))
            if _is_section((*path, key)):
                walk((*path, key))

    walk(())
    assert in_values == in_schema, {"only in values.yaml": sorted(in_values - in_schema), "only in the schema": sorted(in_schema - in_values)}


def test_every_sections_are_closed_so_typos_fail() -> None:
    def walk(path: tuple[str, ...]) -> None:
        node = _schema_at(path)
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{'.'.join(path) or 'the root'} accepts unknown keys"
            for key in node["properties"]:
                walk((*path, key))

    walk(())


def test_every_key_has_a_comment_above_it() -> None:
    lines = VALUES_TEXT.splitlines()
    undocumented = []
    for path, line in _documented_keys(yaml.compose(VALUES_TEXT)):
        if _is_section(path):
            continue  # a section's members carry the documentation
        above = lines[line - 1].strip() if line > 0 else ""
        if not above.startswith("#"):
            undocumented.append(".".join(path))
    assert not undocumented, f"values.yaml keys without a `# --` comment above them: {undocumented}"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda v: v.update(replicaCont=1), "replicaCont"),
        (lambda v: v["operator"].update(logFromat="json"), "logFromat"),
        (lambda v: v["crds"].update(instal=True), "instal"),
        (lambda v: v.update(replicaCount=2), "2"),
        (lambda v: v["operator"].update(logFormat="xml"), "xml"),
        (lambda v: v["image"].update(pullPolicy="Sometimes"), "Sometimes"),
        (lambda v: v.update(watchNamespaces=["Not_A_Namespace"]), "Not_A_Namespace"),
        (lambda v: v["metrics"]["serviceMonitor"].update(interval="often"), "often"),
        (lambda v: v["image"].update(digest="latest"), "latest"),
    ],
)
def test_typos_and_bad_values_fail_validation(change: Any, complaint: str) -> None:
    values = copy.deepcopy(VALUES)
    change(values)
    errors = list(_validator().iter_errors(values))
    assert errors, "the schema accepted a bad value"
    assert any(complaint in e.message for e in errors), [e.message for e in errors]


def test_namespaced_mode_values_are_valid() -> None:
    values = copy.deepcopy(VALUES) | {"watchNamespaces": ["team-a", "team-b"]}
    assert not list(_validator().iter_errors(values))


def test_app_version_tracks_the_package() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == aifunction_operator.__version__ == project["version"]


def test_default_images_match_the_operator_defaults() -> None:
    from aifunction_operator.render.config import DEFAULT_HANDLER_IMAGE, DEFAULT_STORAGE_INITIALIZER_IMAGE, DEFAULT_TRITON_IMAGE

    assert VALUES["operator"]["tritonImage"] == DEFAULT_TRITON_IMAGE
    assert VALUES["operator"]["handlerImage"] == DEFAULT_HANDLER_IMAGE
    assert VALUES["operator"]["storageInitializerImage"] == DEFAULT_STORAGE_INITIALIZER_IMAGE


def test_chart_crd_templates_are_in_sync_with_crds_dir() -> None:
    spec = importlib.util.spec_from_file_location("sync_chart_crds", ROOT / "hack" / "sync-chart-crds.py")
    assert spec and spec.loader
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    assert sync.crd_documents(), "no CRDs found in crds/"
    assert sync.stale_templates() == [], "the chart's CRDs are stale: run `python hack/sync-chart-crds.py` (make crds)"


def test_more_than_one_replica_needs_peering() -> None:
    peered = copy.deepcopy(VALUES)
    peered["replicaCount"] = 2
    peered["operator"]["peering"] = "aifn-operator"
    assert not list(_validator().iter_errors(peered))
    peered["operator"]["peering"] = ""
    assert list(_validator().iter_errors(peered)), "two standalone kopf operators were accepted"
