"""Property-based tests of the spec against the real tools (hypothesis; derandomized, counts printed).

- Every generated valid function renders to Knative objects that Knative's own validation
  (`ksvc-check`) and the apiserver's server-side dry run accept.
- The Python validation (schema + the CEL rules' Python twins in spec/rules.py) and the
  CRD on a real apiserver give the same verdict on generated functions, valid and invalid:
  a server-side dry-run create of each, strict field validation, against the Python verdict.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes.client.exceptions import ApiException
from support.controlplane import BIN, ControlPlane
from support.kube_client import GROUP, PLURAL, VERSION, TestClient
from support.spec_strategies import functions

from aifunction_operator.commands.render import dump_yaml_stream
from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.render import render
from aifunction_operator.spec import InvalidSpec, parse_function
from aifunction_operator.spec.metadata import name_errors
from aifunction_operator.spec.schema import spec_schema
from aifunction_operator.spec.validate import validate

pytestmark = [pytest.mark.integration, pytest.mark.slow]

KSVC_CHECK = BIN / "ksvc-check"
SETTINGS = dict(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def test_valid_functions_render_to_services_knative_accepts(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> None:
    if not KSVC_CHECK.exists():
        pytest.skip(f"{KSVC_CHECK} missing; run `make tools`")
    config = OperatorConfig.from_env()
    streams: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []

    @settings(max_examples=120, **SETTINGS)
    @given(functions(valid=True))
    def collect(function: dict[str, Any]) -> None:
        function["metadata"]["name"] = f"f{len(streams)}-" + function["metadata"]["name"][:40]
        function["metadata"]["name"] = function["metadata"]["name"].rstrip("-")
        streams.append((function, render(parse_function(function), config)))

    collect()
    objects = [obj for _, rendered in streams for obj in rendered]
    path = tmp_path / "rendered.yaml"
    path.write_text(dump_yaml_stream(objects))  # as `aifn render` prints them
    # timeoutSeconds may be up to 3600, which needs the cluster's max-revision-timeout-seconds raised (README).
    checked = subprocess.run([str(KSVC_CHECK), "--defaults", "max-revision-timeout-seconds=3600", str(path)],
                             capture_output=True, text=True, timeout=120)
    invalid = [line for line in checked.stdout.splitlines() if ": invalid" in line]
    print(f"\nksvc-check: {len(streams)} generated functions (derandomized), {checked.stdout.count(': valid')} Services valid, "
          f"{len(invalid)} invalid")
    assert checked.returncode == 0 and not invalid, _with_sources(invalid, streams) or checked.stderr[-3000:]
    # The apiserver (Knative's CRDs, core kinds) takes every object too: one server-side dry run.
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    applied = control_plane.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict", "--field-manager=aifn-test",
                                    "-f", "-", input=dump_yaml_stream(objects), check=False, timeout=300)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert applied.stdout.count("serverside-applied") == len(objects)


def _with_sources(invalid: list[str], streams: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> str:
    names = {line.split()[1].split("/")[-1] for line in invalid}
    sources = [yaml.safe_dump(fn) for fn, rendered in streams if rendered[0]["metadata"]["name"] in names]
    return "\n".join(invalid) + "\nfunctions:\n" + "\n---\n".join(sources[:3])


def python_errors(function: dict[str, Any]) -> list[str]:
    """What the CRD checks, as the Python side checks it: the name rule, the schema and the CEL twins."""
    errors = name_errors(function["metadata"]["name"])
    _, spec_errors = validate(function["spec"], spec_schema(), "spec")
    return [str(e) for e in errors + spec_errors]


def test_python_rules_and_the_crds_cel_agree(control_plane: ControlPlane, namespace: str) -> None:
    kube = TestClient(control_plane.kubeconfig)
    tally = {"both accept": 0, "both refuse": 0}
    disagreements: list[str] = []

    @settings(max_examples=800, **SETTINGS)
    @given(st.one_of(functions(valid=False), functions(valid=True, mend=False)))
    def check(function: dict[str, Any]) -> None:
        expected = python_errors(function)
        try:
            kube.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, function,
                                                        dry_run="All", field_validation="Strict")
            refused = ""
        except ApiException as exc:
            if exc.status not in (400, 422):
                raise
            refused = _message(exc)
        if bool(expected) != bool(refused):
            disagreements.append(f"python: {expected or 'valid'}\napiserver: {refused or 'accepted'}\n{json.dumps(function)}")
        else:
            tally["both refuse" if refused else "both accept"] += 1

    check()
    print(f"\nCEL vs Python: {sum(tally.values()) + len(disagreements)} generated functions (derandomized): {tally}, "
          f"{len(disagreements)} disagreements")
    assert not disagreements, "\n\n".join(disagreements[:5])
    assert tally["both accept"] >= 20 and tally["both refuse"] >= 20, tally  # the generator reaches both sides


def _message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body).get("message"))
    except (TypeError, ValueError):
        return str(exc.body)


def test_a_parse_error_is_a_python_refusal() -> None:
    """Control: python_errors is the verdict parse_function gives on these documents."""
    bad = {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": {"name": "fn"},
           "spec": {"model": {"repository": "s3://b/r"}, "scaling": {"minReplicas": 3, "maxReplicas": 1}}}
    assert python_errors(bad)
    with pytest.raises(InvalidSpec):
        parse_function(bad)
