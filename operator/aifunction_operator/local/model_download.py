"""Where `aifn run` finds the model repository, downloading remote ones into a local cache.

Order: `--model-repo DIR`, then the annotation `aifn.dev/local-model-repository` (relative
to the function's file), then `spec.model.repository` when it is a local path or `file://`,
then a remote URI (`s3://`, `gs://`, `http(s)://`, `hf://`, ...) fetched once with the
`kserve-storage` package into `~/.cache/aifn/models/<sha256 of the URI>`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..constants import ANNOTATION_LOCAL_REPOSITORY
from ..spec.model import AIFunction

REMOTE_SCHEMES = ("s3", "gs", "as", "http", "https", "hf", "hdfs", "webhdfs", "modelscope", "oci")
COMPLETE_MARKER = ".aifn-complete"


class RepositoryError(Exception):
    """The model repository cannot be used; the message names the source and the problem."""


def resolve_repository(fn: AIFunction, function_file: Path | None, override: str | None = None) -> Path:
    """The local directory holding `fn`'s model repository (downloaded if remote)."""
    base = function_file.resolve().parent if function_file else Path.cwd()
    if override:
        return _checked(Path(override).expanduser().resolve(), fn.spec.model.name, "--model-repo")
    annotated = fn.annotations.get(ANNOTATION_LOCAL_REPOSITORY)
    if annotated:
        return _checked((base / annotated).resolve(), fn.spec.model.name, f"annotation {ANNOTATION_LOCAL_REPOSITORY}")
    uri = fn.spec.model.repository
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return _checked((base / uri).resolve(), fn.spec.model.name, "spec.model.repository")
    if scheme == "file":
        return _checked(Path(rest), fn.spec.model.name, "spec.model.repository")
    if scheme == "pvc":
        raise RepositoryError(
            f"spec.model.repository is {uri!r}, a Kubernetes volume: pass --model-repo DIR or set the annotation "
            f"{ANNOTATION_LOCAL_REPOSITORY} to a local copy of the repository"
        )
    if scheme in REMOTE_SCHEMES:
        return _checked(download(uri), fn.spec.model.name, f"spec.model.repository ({uri})")
    raise RepositoryError(f"spec.model.repository: unsupported URI scheme {scheme + '://'!r}")


def cache_dir_for(uri: str, cache_root: Path | None = None) -> Path:
    """The cache directory a remote repository URI is downloaded into."""
    root = cache_root or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aifn" / "models"
    return root / hashlib.sha256(uri.encode()).hexdigest()[:32]


def download(uri: str, cache_root: Path | None = None) -> Path:
    """Fetch `uri` with kserve-storage into its cache directory once; later calls reuse it.

    Concurrent runs (two `aifn run`s of one function, or of two functions sharing a
    repository) take turns on an exclusive lock file next to the cache directory: the first
    downloads, the others wait and then find it complete. Each download goes into its own
    `<target>.partial-*` directory, so nothing deletes another run's files; partial
    directories found while holding the lock belong to runs that died, and are removed.
    """
    target = cache_dir_for(uri, cache_root)
    if (target / COMPLETE_MARKER).is_file():
        return target
    try:
        from kserve_storage import Storage  # noqa: PLC0415 - heavy import, only for remote repositories
    except ImportError as exc:
        raise RepositoryError(f"{uri}: downloading needs the kserve-storage package ({exc})") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock"), uri):
        if (target / COMPLETE_MARKER).is_file():  # another run finished it while this one waited
            return target
        for stale in target.parent.glob(target.name + ".partial*"):
            shutil.rmtree(stale, ignore_errors=True)
        partial = Path(tempfile.mkdtemp(prefix=target.name + ".partial-", dir=target.parent))
        progress = _Progress(partial, uri)
        progress.start()
        try:
            Storage.download(uri, out_dir=str(partial))
        except Exception as exc:  # noqa: BLE001 - kserve-storage raises many kinds; report them all the same way
            shutil.rmtree(partial, ignore_errors=True)
            raise RepositoryError(f"{uri}: download failed: {type(exc).__name__}: {exc}") from exc
        finally:
            progress.stop()
        (partial / COMPLETE_MARKER).write_text(uri + "\n")
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
    return target


@contextlib.contextmanager
def _exclusive(lock_path: Path, uri: str) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (released by the kernel if the process dies)."""
    with open(lock_path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write(f"waiting for another aifn run downloading {uri}\n")
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _checked(path: Path, model_name: str, source: str) -> Path:
    if not path.is_dir():
        raise RepositoryError(f"{source}: model repository {path} is not a directory")
    if not (path / model_name).is_dir():
        found = sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise RepositoryError(
            f"{source}: {path} has no directory for model '{model_name}' (found: {', '.join(found) or 'nothing'})"
        )
    return path


class _Progress:
    """A one-line progress indication (bytes downloaded so far) on stderr while a download runs."""

    def __init__(self, directory: Path, uri: str) -> None:
        self._directory = directory
        self._uri = uri
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        sys.stderr.write(f"\rdownloaded {self._uri}: {_size(self._directory) / 1e6:.1f} MB\n")

    def _run(self) -> None:
        started = time.monotonic()
        spinner = "|/-\\"
        tick = 0
        while not self._done.wait(0.5):
            tick += 1
            mb = _size(self._directory) / 1e6
            sys.stderr.write(
                f"\r{spinner[tick % 4]} downloading {self._uri}: {mb:.1f} MB ({time.monotonic() - started:.0f}s)"
            )
            sys.stderr.flush()


def _size(directory: Path) -> int:
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            try:
                total += (Path(root) / name).stat().st_size
            except OSError:
                pass
    return total
