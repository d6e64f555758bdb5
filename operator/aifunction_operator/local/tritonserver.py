"""Run the real `tritonserver` that ships in the nvidia-pytriton wheel, on this machine.

This module is the one place that knows the wheel's layout and what the python backend
needs to work outside NVIDIA's container:

- the stub (`triton_python_backend_stub`) built for this interpreter's Python version is
  copied next to the python backend in a private backends directory (the wheel itself is
  never modified);
- `LD_LIBRARY_PATH` starts with this interpreter's `LIBDIR`, so the stub links against the
  libpython it was started from (a distribution's older libpython fails with an
  `_recursion_count` error), then the wheel's own bundled libraries;
- `PATH` starts with this interpreter's `bin` directory: the stub embeds Python with an
  isolated configuration (environment variables such as PYTHONPATH are ignored) and finds
  its prefix by looking up `python3` on PATH, so this makes models see the virtual
  environment's site-packages (torch, numpy, ...).

`TritonProcess` starts one server in its own process group (the stubs are its children)
and `stop()` always takes the whole group down, so no server or stub outlives it. With
`die_with_parent` the server also gets SIGTERM from the kernel when the thread that started
it ends, so a gateway killed with SIGKILL leaves no server behind (the stubs exit when
their server does).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType

from aifunction_operator.triton_command import DEFAULT_TRITON_IMAGE
from aifunction_operator.triton_command import TritonPorts, triton_args

CONTAINER_HINT = (
    "serve the model with the Triton container image instead "
    f"({DEFAULT_TRITON_IMAGE}, the image the operator renders)"
)
SUPPORTED_MACHINES = ("x86_64", "aarch64")
STUB_NAME = "triton_python_backend_stub"
PYTHON_BACKEND_FILES = ("libtriton_python.so", "triton_python_backend_utils.py")


class TritonUnavailable(RuntimeError):
    """No usable tritonserver on this machine; the message says why and what to do instead."""


class TritonStartError(RuntimeError):
    """tritonserver exited or did not become ready; the message carries the end of its log."""


class TritonStartTimeout(TritonStartError):
    """tritonserver was not ready within the function's startupTimeout."""


@dataclass(frozen=True)
class TritonInstall:
    """A tritonserver binary, a backends directory with a working python backend, its libraries."""

    binary: Path
    backends_dir: Path
    cache_dir: Path
    library_dirs: tuple[Path, ...]
    python_bin_dir: Path
    version: str

    def environment(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment tritonserver (and the python backend stubs it starts) must run with."""
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = _join_paths(self.library_dirs, env.get("LD_LIBRARY_PATH"))
        env["PATH"] = _join_paths((self.python_bin_dir,), env.get("PATH"))
        return env

    def server_args(self) -> list[str]:
        """Arguments that point tritonserver at this install's backends and caches."""
        return [f"--backend-directory={self.backends_dir}", f"--cache-directory={self.cache_dir}"]


def find_triton(cache_root: Path | None = None) -> TritonInstall:
    """Locate the wheel's tritonserver and prepare its python backend; raise TritonUnavailable."""
    machine = platform.machine()
    if sys.platform != "linux" or machine not in SUPPORTED_MACHINES:
        raise TritonUnavailable(
            f"the nvidia-pytriton wheel ships tritonserver only for Linux on {'/'.join(SUPPORTED_MACHINES)}; "
            f"this is {sys.platform}/{machine}: {CONTAINER_HINT}"
        )
    try:
        import pytriton  # noqa: PLC0415 - optional dependency, checked here
    except ImportError as exc:
        raise TritonUnavailable(
            f"nvidia-pytriton is not installed ({exc}); install the 'local' extra "
            f"(pip install 'aifunction-operator[local]') or {CONTAINER_HINT}"
        ) from exc
    dist = Path(pytriton.__file__).resolve().parent / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / python_version / STUB_NAME
    for needed in (binary, stub, *(dist / "backends" / "python" / f for f in PYTHON_BACKEND_FILES)):
        if not needed.is_file():
            raise TritonUnavailable(
                f"{needed} is missing from the nvidia-pytriton wheel (Python {python_version}); {CONTAINER_HINT}"
            )
    version = metadata.version("nvidia-pytriton")
    # One prepared copy per installed wheel: two virtual environments must not refresh each other's.
    origin = hashlib.sha256(str(dist).encode()).hexdigest()[:10]
    key = f"pytriton-{version}-py{python_version}-{origin}"
    try:
        backends_dir = _prepare_backends(
            dist / "backends" / "python", stub, (cache_root or _default_cache_root()) / key / "backends"
        )
    except OSError:  # e.g. a read-only home directory: fall back to a private temp directory
        fallback = Path(tempfile.gettempdir()) / f"aifn-triton-{os.getuid()}" / key / "backends"
        backends_dir = _prepare_backends(dist / "backends" / "python", stub, fallback)
    libs = dist.parent.parent / "nvidia_pytriton.libs"
    library_dirs = tuple(
        p for p in (Path(str(sysconfig.get_config_var("LIBDIR"))), libs, dist / "lib") if p.is_dir()
    )
    return TritonInstall(
        binary=binary,
        backends_dir=backends_dir,
        cache_dir=dist / "caches",
        library_dirs=library_dirs,
        python_bin_dir=Path(sysconfig.get_path("scripts")),
        version=version,
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on `host` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(host: str = "127.0.0.1") -> TritonPorts:
    """Three distinct free ports for HTTP, gRPC and metrics, bound to `host`.

    Another process may take one before Triton binds it; Triton then exits and wait_ready()
    raises TritonStartError, after which a caller can retry with fresh ports.
    """
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port(host))
    http, grpc, metrics = sorted(ports)
    return TritonPorts(http=http, grpc=grpc, metrics=metrics, address=host)


class TritonProcess:
    """One tritonserver process serving one model from a model repository."""

    def __init__(
        self,
        install: TritonInstall,
        model_repository: Path | str,
        model_name: str,
        *,
        ports: TritonPorts | None = None,
        log_path: Path | str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self.install = install
        self.model_repository = Path(model_repository).resolve()
        self.model_name = model_name
        self.ports = ports or free_ports()
        self.log_path = Path(log_path) if log_path else _temp_log_path(model_name)
        self.extra_args = tuple(extra_args)
        self._env = env
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """The address clients connect to."""
        return self.ports.address or "127.0.0.1"

    @property
    def http_url(self) -> str:
        """host:port for tritonclient.http."""
        return f"{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        """host:port for tritonclient.grpc."""
        return f"{self.host}:{self.ports.grpc}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus metrics endpoint."""
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id), None before start."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status once the server has exited, else None."""
        return self._proc.poll() if self._proc else None

    def command(self) -> list[str]:
        """The full command line this process runs."""
        shm_prefix = f"aifn{os.getpid()}p{self.ports.http}_"
        args = triton_args(
            model_repository=str(self.model_repository),
            model_name=self.model_name,
            ports=self.ports,
            extra_args=[
                *self.install.server_args(),
                f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
                *self.extra_args,
            ],
        )
        return [str(self.install.binary), *args]

    def start(self) -> TritonProcess:
        """Start the server in its own process group; returns at once (see wait_ready)."""
        if self._proc is not None:
            raise RuntimeError("this TritonProcess was already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                _parent_death_wrapper() + self.command() if self.die_with_parent else self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.install.environment(self._env),
                start_new_session=True,
            )
        _RUNNING.add(self)
        return self

    def is_live(self) -> bool:
        """True while the process runs and answers /v2/health/live."""
        return self.returncode is None and self._health("live")

    def is_ready(self) -> bool:
        """True when /v2/health/ready answers 200 (strict readiness: the model is loaded)."""
        return self.returncode is None and self._health("ready")

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until ready; raise TritonStartError (with the log tail) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is None:
                raise RuntimeError("wait_ready() before start()")
            code = self._proc.poll()
            if code is not None:
                raise TritonStartError(
                    f"tritonserver for model {self.model_name!r} exited with status {code} "
                    f"before it was ready; log {self.log_path}:\n{self.log_tail()}"
                )
            if self._health("ready"):
                return
            time.sleep(0.1)
        raise TritonStartError(
            f"tritonserver for model {self.model_name!r} was not ready within {timeout:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the server, SIGKILL its process group after `grace` seconds; returns the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            # Only the server gets SIGTERM: it drains requests and unloads models, which
            # stops the stubs cleanly. Open client connections delay its exit (up to
            # --exit-timeout-secs), hence the grace period.
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        # Stubs that outlived the server (e.g. after a crash) die with the group; wait until
        # the kernel has taken them down so that "stopped" means no process is left.
        _signal_group(proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while process_group_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        _RUNNING.discard(self)
        return proc.returncode

    def group_pids(self) -> list[int]:
        """Processes still in the server's process group (the server and its stubs)."""
        return process_group_pids(self._proc.pid) if self._proc else []

    def log_tail(self, max_chars: int = 4000) -> str:
        """The last `max_chars` characters of the server log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-max_chars:]

    def __enter__(self) -> TritonProcess:
        if self._proc is None:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _health(self, which: str) -> bool:
        url = f"http://{self.host}:{self.ports.http}/v2/health/{which}"
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False


# Strong references: a started server is stopped at interpreter exit even if its owner
# dropped the TritonProcess without calling stop().
_RUNNING: set[TritonProcess] = set()


@atexit.register
def _stop_all() -> None:
    for proc in list(_RUNNING):
        proc.stop(grace=5.0)


def _live_processes() -> Iterator[tuple[int, str, list[str]]]:
    """(pid, command, stat fields after the command) of every live (non-zombie) process, from /proc."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            command = text[text.index("(") + 1 : text.rindex(")")]
            fields = text[text.rindex(")") + 2 :].split()
        except (OSError, ValueError):
            continue
        if fields and fields[0] != "Z":
            yield int(stat.parent.name), command, fields


def process_group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, read from /proc."""
    return sorted(pid for pid, _, fields in _live_processes() if int(fields[2]) == pgid)


def child_pids(parent: int, command: str) -> list[int]:
    """Live children of `parent` running `command` (e.g. the tritonserver replicas of a gateway)."""
    return sorted(pid for pid, name, fields in _live_processes() if int(fields[1]) == parent and name == command[:15])


def _parent_death_wrapper() -> list[str]:
    """`setpriv --pdeathsig TERM --`: the kernel sends the server SIGTERM when its parent thread ends.

    setpriv (util-linux) sets the signal and execs the server in the same process. A
    preexec_fn calling prctl would do the same, but it forces fork() instead of vfork(), and
    fork() runs gRPC's fork handlers in the child, which crashed it (SIGSEGV before exec, seen
    with the gRPC gateway). Without setpriv (not Linux, or no util-linux) there is no wrapper.
    """
    setpriv = shutil.which("setpriv") if sys.platform.startswith("linux") else None
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _prepare_backends(python_backend: Path, stub: Path, backends_dir: Path) -> Path:
    """Copy the python backend and the matching stub into `backends_dir/python` (idempotent)."""
    target = backends_dir / "python"
    sources = [python_backend / f for f in PYTHON_BACKEND_FILES] + [stub]
    if all(_same_file(src, target / src.name) for src in sources):
        return backends_dir
    target.mkdir(parents=True, exist_ok=True)
    for src in sources:
        dst = target / src.name
        if _same_file(src, dst):
            continue
        # Copy then rename, so a concurrent starter never sees a half-written stub.
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    return backends_dir


def _same_file(src: Path, dst: Path) -> bool:
    try:
        a, b = src.stat(), dst.stat()
    except FileNotFoundError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)


def _default_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "aifn" / "triton"


def _temp_log_path(model_name: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f"tritonserver-{model_name}-", suffix=".log")
    os.close(fd)
    return Path(name)


def _join_paths(first: Sequence[Path], existing: str | None) -> str:
    parts = [str(p) for p in first]
    if existing:
        parts += [p for p in existing.split(os.pathsep) if p and p not in parts]
    return os.pathsep.join(parts)
