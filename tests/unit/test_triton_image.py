"""The default Triton image: new enough for NVIDIA's 2025 fixes, and the one every doc and the chart name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.triton_command import DEFAULT_TRITON_IMAGE, FIRST_FIXED_TRITON_RELEASE

ROOT = Path(__file__).resolve().parents[2]
NAMED_IN = ["README.md", "model_repo/README.md", "docs/operator.md", "docs/install.md", "docs/local.md"]


def release(image: str) -> tuple[int, int]:
    """(yy, mm) of an NGC tritonserver tag such as 26.08-py3."""
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d{2})\.(\d{2})-[a-z0-9-]+", image)
    assert match, f"not an NGC tritonserver image: {image}"
    return int(match[1]), int(match[2])


def test_default_image_has_the_2025_security_fixes() -> None:
    assert release(DEFAULT_TRITON_IMAGE) >= FIRST_FIXED_TRITON_RELEASE
    assert OperatorConfig().triton_image == DEFAULT_TRITON_IMAGE


def test_chart_default_is_the_operator_default() -> None:
    values = yaml.safe_load((ROOT / "charts/aifunction-operator/values.yaml").read_text())
    assert values["operator"]["tritonImage"] == DEFAULT_TRITON_IMAGE


@pytest.mark.parametrize("path", NAMED_IN)
def test_docs_name_the_default_and_no_older_triton_image(path: str) -> None:
    text = (ROOT / path).read_text()
    assert DEFAULT_TRITON_IMAGE in text, f"{path} does not name {DEFAULT_TRITON_IMAGE}"
    older = [i for i in re.findall(r"nvcr\.io/nvidia/tritonserver:[0-9][0-9.]*-[a-z0-9-]+", text)
             if release(i) < FIRST_FIXED_TRITON_RELEASE]
    assert not older, f"{path} names images without NVIDIA's 2025 fixes: {older}"
