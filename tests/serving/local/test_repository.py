"""Where `aifn run` finds the model repository; remote URIs go through kserve-storage into a cache.

The remote case downloads over real HTTP from a server on loopback (a tar.gz of a model
repository), so kserve-storage's http path, unpacking and the cache are exercised for real.
"""

from __future__ import annotations

import functools
import http.server
import socket
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from aifunction_operator.local.model_download import RepositoryError, cache_dir_for, download, resolve_repository
from aifunction_operator.spec import parse_function

from .conftest import TEST_MODELS

ROOT = Path(__file__).resolve().parents[3]


def function(repository: str, annotation: str | None = None, model: str = "slow") -> dict:
    metadata: dict = {"name": "f"}
    if annotation is not None:
        metadata["annotations"] = {"aifn.dev/local-model-repository": annotation}
    return {"apiVersion": "aifn.dev/v1alpha1", "kind": "AIFunction", "metadata": metadata,
            "spec": {"model": {"name": model, "repository": repository}}}


def test_model_repo_flag_wins(tmp_path: Path) -> None:
    fn = parse_function(function("pvc://models", annotation="elsewhere"))
    assert resolve_repository(fn, tmp_path / "f.yaml", str(TEST_MODELS)) == TEST_MODELS


def test_annotation_is_relative_to_the_function_file(tmp_path: Path) -> None:
    fn = parse_function(function("pvc://models", annotation="models"))
    assert resolve_repository(fn, TEST_MODELS.parent / "f.yaml") == TEST_MODELS


def test_local_path_and_file_uri_in_the_spec(tmp_path: Path) -> None:
    assert resolve_repository(parse_function(function("models")), TEST_MODELS.parent / "f.yaml") == TEST_MODELS
    assert resolve_repository(parse_function(function(f"file://{TEST_MODELS}")), tmp_path / "f.yaml") == TEST_MODELS


def test_errors_name_the_source_and_the_problem(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="Kubernetes volume: pass --model-repo"):
        resolve_repository(parse_function(function("pvc://models")), tmp_path / "f.yaml")
    with pytest.raises(RepositoryError, match=r"annotation aifn.dev/local-model-repository: .* is not a directory"):
        resolve_repository(parse_function(function("pvc://m", annotation="missing")), tmp_path / "f.yaml")
    with pytest.raises(RepositoryError, match=r"has no directory for model 'absent' \(found: broken, slow, typed\)"):
        resolve_repository(parse_function(function("pvc://m", model="absent")), tmp_path / "f.yaml", str(TEST_MODELS))


@pytest.fixture
def served_archive(tmp_path: Path) -> Iterator[str]:
    """http://127.0.0.1:<port>/repo.tar.gz holding tests/serving/local/models/slow."""
    site = tmp_path / "site"
    site.mkdir()
    with tarfile.open(site / "repo.tar.gz", "w:gz") as archive:
        archive.add(TEST_MODELS / "slow", arcname="slow")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.tar.gz"
    server.shutdown()


def test_remote_repository_is_downloaded_once_into_the_cache(served_archive: str, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = download(served_archive, cache)
    assert path == cache_dir_for(served_archive, cache)
    assert (path / "slow" / "config.pbtxt").read_text() == (TEST_MODELS / "slow" / "config.pbtxt").read_text()
    (path / "slow" / "marker").write_text("kept")
    assert download(served_archive, cache) == path
    assert (path / "slow" / "marker").read_text() == "kept", "the cached copy was downloaded again"


def test_failed_download_names_the_uri(tmp_path: Path) -> None:
    uri = "http://127.0.0.1:9/nothing-here.tar.gz"
    with pytest.raises(RepositoryError, match="nothing-here.tar.gz: download failed"):
        download(uri, tmp_path / "cache")
    assert not cache_dir_for(uri, tmp_path / "cache").exists()


@pytest.mark.slow
def test_aifn_run_rejects_bad_files_with_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    doc = function("pvc://models")
    doc["spec"]["scaling"] = {"maxReplicas": 0}
    bad.write_text(yaml.safe_dump(doc))
    pvc_only = tmp_path / "pvc.yaml"
    pvc_only.write_text(yaml.safe_dump(function("pvc://models")))
    for path, message in ((bad, "spec.scaling.maxReplicas"), (pvc_only, "--model-repo"),
                          (tmp_path / "absent.yaml", "cannot read")):
        done = subprocess.run([sys.executable, "-m", "aifunction_operator", "run", str(path), "--port", "0"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (path, done.stderr)
        assert message in done.stderr, done.stderr


@pytest.mark.slow
def test_aifn_run_on_a_busy_port_exits_3_naming_the_address() -> None:
    from .conftest import triton_or_skip

    triton_or_skip()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "aifunction_operator", "run", str(ROOT / "examples" / "digits.yaml"),
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


DOWNLOAD = "import sys; from pathlib import Path; from aifunction_operator.local.model_download import download; print(download(sys.argv[1], Path(sys.argv[2])))"


@pytest.fixture
def slow_archive(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """http://127.0.0.1:<port>/repo.tar.gz holding tests/serving/local/models/slow, sent over about 3 s; the list logs each GET."""
    buffer = tmp_path / "repo.tar.gz"
    with tarfile.open(buffer, "w:gz") as archive:
        archive.add(TEST_MODELS / "slow", arcname="slow")
    data = buffer.read_bytes()
    served: list[str] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            step = max(1, len(data) // 15)
            for start in range(0, len(data), step):
                self.wfile.write(data[start:start + step])
                self.wfile.flush()
                time.sleep(0.2)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/repo.tar.gz", served
    server.shutdown()


def test_two_runs_downloading_the_same_repository_both_get_it(slow_archive: tuple[str, list[str]], tmp_path: Path) -> None:
    """Two processes (as two `aifn run`s would) fetch one URI into one cache at the same time."""
    uri, served = slow_archive
    cache = tmp_path / "cache"
    first = subprocess.Popen([sys.executable, "-c", DOWNLOAD, uri, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.8)  # the first is mid-download
    second = subprocess.Popen([sys.executable, "-c", DOWNLOAD, uri, str(cache)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outputs):
        assert proc.returncode == 0, err[-2000:]
        assert Path(out.strip()) == cache_dir_for(uri, cache)
    target = cache_dir_for(uri, cache)
    assert (target / "slow" / "config.pbtxt").read_text() == (TEST_MODELS / "slow" / "config.pbtxt").read_text()
    assert (target / "slow" / "1" / "model.py").is_file()
    assert served == ["/repo.tar.gz"], f"expected one download, the second run reusing it: {served}"
    leftovers = sorted(p.name for p in cache.iterdir() if p != target and not p.name.endswith(".lock"))
    assert leftovers == [], f"partial downloads left in the cache: {leftovers}"
