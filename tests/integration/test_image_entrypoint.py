"""The operator image's install recipe and entrypoint, as a process, without Docker.

The Dockerfile installs hack/operator-image-requirements.txt with --no-deps, then the package
without extras, runs `pip check`, and starts `aifn operator` (its ENTRYPOINT). These tests do
the same in a fresh virtual environment and start the entrypoint against the real control
plane, so a missing runtime dependency, an import of a dev-only package or a broken start fails
here rather than in a cluster. (Docker builds the image itself in `make images` and the e2e.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from support.processes import free_port, http_ok, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "hack" / "operator-image-requirements.txt"
DOCKERFILE = (ROOT / "Dockerfile").read_text()
pytestmark = pytest.mark.integration


def lock_pins() -> dict[str, str]:
    """name -> version of every `name==version` line in the lock."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def entrypoint() -> list[str]:
    match = re.search(r"^ENTRYPOINT (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert match, "the Dockerfile has no exec-form ENTRYPOINT"
    return json.loads(match.group(1))


def test_dockerfile_installs_the_lock_without_extras_as_non_root() -> None:
    assert "pip install --no-deps -r /tmp/requirements.txt" in DOCKERFILE
    assert "COPY hack/operator-image-requirements.txt /tmp/requirements.txt" in DOCKERFILE
    assert re.search(r"pip install --no-deps /src\b(?!\[)", DOCKERFILE), "the package must be installed without extras"
    assert "pip check" in DOCKERFILE
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", DOCKERFILE, re.MULTILINE), "slim Python 3.11 pinned by tag"
    user = re.findall(r"^USER (\S+)$", DOCKERFILE, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("0", "root"), "the final stage must run as a non-root user"
    final_stage = DOCKERFILE.rsplit("\nFROM ", 1)[1]
    assert not re.search(r"apt-get install|build-essential|gcc", final_stage), "no build tools in the final stage"
    assert entrypoint() == ["aifn", "operator"]


def test_dockerfile_installs_offline_from_a_wheelhouse_the_no_docker_build_fills() -> None:
    """hack/build_images.py builds this Dockerfile with buildah from a context it assembles: every COPY
    source must be in that context, and pip must use only the wheelhouse when it holds wheels."""
    from support.cluster.operator_image import CONTEXT_FILES, CONTEXT_TREES, WHEELHOUSE_IN_CONTEXT

    build_stage = DOCKERFILE.split("\nFROM ", 2)[1]
    assert f"COPY {WHEELHOUSE_IN_CONTEXT}/ /tmp/wheels/" in build_stage
    assert "no-index = true" in build_stage and "find-links = /tmp/wheels" in build_stage
    assert build_stage.index("/tmp/wheels") < build_stage.index("pip install"), "the wheelhouse must come before pip"
    assert (ROOT / WHEELHOUSE_IN_CONTEXT / ".gitignore").is_file(), "a plain `docker build .` needs the directory"
    assert f"!{WHEELHOUSE_IN_CONTEXT}/" in (ROOT / ".dockerignore").read_text()
    sources = [source for line in re.findall(r"^COPY (?!--from)(.+)$", DOCKERFILE, re.MULTILINE)
               for source in line.split()[:-1]]
    for source in sources:
        source = source.rstrip("/")
        assert source in (*CONTEXT_FILES, *CONTEXT_TREES, WHEELHOUSE_IN_CONTEXT), \
            f"COPY {source}: add it to the context hack/build_images.py assembles (support/cluster/operator_image.py)"


def test_lock_pins_satisfy_the_package_dependencies() -> None:
    pins = lock_pins()
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for line in dependencies:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is a dependency but not in {LOCK.name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} does not satisfy {requirement}"


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the package installed exactly as the Dockerfile installs it."""
    venv = tmp_path_factory.mktemp("image") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    for args in (["install", "--no-deps", "-r", str(LOCK)], ["install", "--no-deps", str(ROOT)], ["check"]):
        result = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, f"pip {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return venv


@pytest.mark.slow
def test_fresh_install_has_exactly_the_locked_packages(image_venv: Path) -> None:
    frozen = subprocess.run([str(image_venv / "bin" / "python"), "-m", "pip", "freeze", "--exclude", "aifunction-operator"],
                            capture_output=True, text=True, check=True).stdout
    installed = {canonicalize_name(n): v for n, v in (line.split("==") for line in frozen.split() if "==" in line)}
    assert installed == lock_pins()
    for dev_only in ("numpy", "tritonclient", "torch", "sklearn", "kserve"):
        probe = subprocess.run([str(image_venv / "bin" / "python"), "-c", f"import {dev_only}"], capture_output=True)
        assert probe.returncode != 0, f"{dev_only} is importable in the operator image"


@pytest.mark.slow
def test_entrypoint_help(image_venv: Path) -> None:
    program, *args = entrypoint()
    result = subprocess.run([str(image_venv / "bin" / program), *args, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for flag in ("--namespace", "--health-port", "--metrics-port", "--log-format", "--peering", "--standalone", "--knative-namespace"):
        assert flag in result.stdout, f"{flag} missing from `aifn operator --help`"


@pytest.fixture
def started_entrypoint(image_venv: Path, control_plane: object, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    program, *args = entrypoint()
    health, metrics = free_port(), free_port()
    log_path = tmp_path / "operator.log"
    env = {
        "PATH": f"{image_venv / 'bin'}:/usr/bin:/bin",
        "KUBECONFIG": str(control_plane.kubeconfig),  # type: ignore[attr-defined]
        "AIFN_TRITON_IMAGE": "nvcr.io/nvidia/tritonserver:24.10-pyt-python-py3",
        "AIFN_LOG_FORMAT": "json",
        "PYTHONDONTWRITEBYTECODE": "1",
        "POD_NAME": "entrypoint-test",
    }
    argv = [str(image_venv / "bin" / program), *args, "--standalone", f"--health-port={health}", f"--metrics-port={metrics}"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    yield process, health, metrics, log_path
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.mark.slow
def test_entrypoint_starts_serves_health_and_metrics_and_stops_on_sigterm(started_entrypoint: tuple[subprocess.Popen[bytes], int, int, Path]) -> None:
    process, health, metrics, log_path = started_entrypoint
    wait_until("the entrypoint's /readyz", lambda: process.poll() is not None or http_ok(f"http://127.0.0.1:{health}/readyz"),
               180, interval=0.5, diagnose=lambda: log_path.read_text()[-4000:])
    assert process.poll() is None, f"the entrypoint exited ({process.returncode}):\n{log_path.read_text()}"
    assert http_ok(f"http://127.0.0.1:{health}/healthz") and http_ok(f"http://127.0.0.1:{health}/readyz"), log_path.read_text()
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as response:
        exposition = response.read().decode()
    assert "aifn_" in exposition, exposition[:2000]
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), f"--log-format json via AIFN_LOG_FORMAT:\n{lines[:5]}"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()[-3000:]
    print(f"\nentrypoint stopped {time.monotonic() - started:.1f}s after SIGTERM")
