"""`aifn render`, `aifn validate` and `aifn crd`: the pure stages, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

from ..render.config import OperatorConfig
from ..spec.crd import build_crd
from ..render import render
from ..spec import InvalidSpec
from .inputs import InputError, load_functions

EXIT_INVALID = 2


def register(subparsers: Any) -> None:
    """Add render, validate and crd."""
    p = subparsers.add_parser("render", help="print the Kubernetes objects a function becomes (Knative Service first)")
    p.add_argument("-f", "--filename", required=True, help="AIFunction YAML file, '-' for stdin")
    p.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    p.set_defaults(command=run_render)
    p = subparsers.add_parser("validate", help="check a function as the cluster would; exit 2 naming every bad field")
    p.add_argument("-f", "--filename", required=True, help="AIFunction YAML file, '-' for stdin")
    p.set_defaults(command=run_validate)
    p = subparsers.add_parser("crd", help="print the AIFunction CustomResourceDefinition")
    p.set_defaults(command=run_crd)


class _KubernetesDumper(yaml.SafeDumper):
    """SafeDumper that also quotes the strings Go's YAML 1.1 decoder (kubectl's) reads as booleans.

    PyYAML writes `y` and `n` plain; kubectl and Knative read a plain `y`/`n` as true/false, so a
    Secret or RuntimeClass named `n` came back as "cannot unmarshal bool into ... of type string".
    """


_GO_YAML_BOOLEANS = frozenset({"y", "Y", "n", "N"})


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if value in _GO_YAML_BOOLEANS:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_KubernetesDumper.add_representer(str, _represent_str)


def dump_yaml_stream(objects: list[dict[str, Any]]) -> str:
    """Objects as a YAML stream, keys in the renderer's order, read back the same by kubectl."""
    return yaml.dump_all(objects, Dumper=_KubernetesDumper, sort_keys=False, default_flow_style=False, width=1000)


def run_render(args: argparse.Namespace) -> int:
    try:
        config = OperatorConfig.from_env()
        objects = [obj for fn in load_functions(args.filename) for obj in render(fn, config)]
    except (InputError, InvalidSpec) as exc:
        return _fail(exc, args.filename)
    if args.output == "json":
        out = json.dumps(objects[0] if len(objects) == 1 else {"apiVersion": "v1", "kind": "List", "items": objects}, indent=2)
        print(out)
    else:
        sys.stdout.write(dump_yaml_stream(objects))
    return 0


def run_validate(args: argparse.Namespace) -> int:
    try:
        functions = load_functions(args.filename)
    except InputError as exc:
        return _fail(exc, args.filename)
    for fn in functions:
        print(f"{fn.namespace}/{fn.name}: valid")
    return 0


def run_crd(args: argparse.Namespace) -> int:
    sys.stdout.write(dump_yaml_stream([build_crd()]))
    return 0


def _fail(exc: Exception, filename: str) -> int:
    message = exc.report() if isinstance(exc, InvalidSpec) else str(exc)
    if isinstance(exc, InvalidSpec):
        message = "\n".join(f"{filename}: {line}" for line in message.splitlines())
    print(message, file=sys.stderr)
    return EXIT_INVALID
