"""One Triton replica of a local function: its process, its state, the activator's client to it, its cold-start stages.

A replica moves STARTING -> READY -> DRAINING -> STOPPED, or to FAILED when its process
exits on its own. The blocking work of `TritonProcess` (spawn, stop) runs in a thread so the
gateway's event loop never stalls; readiness is polled with the replica's own aiohttp session.
Each replica has its own connection pool, closed before the server is stopped: Triton waits
for open client connections before it exits.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp

from .data_plane import HostLoad
from .tritonserver import TritonProcess, TritonStartError, TritonStartTimeout

POLL_INTERVAL = 0.05


class State(str, enum.Enum):
    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass
class ColdStart:
    """Seconds from the start request to each stage of one replica's cold start."""

    spawn: float | None = None
    server_live: float | None = None
    model_ready: float | None = None
    first_response: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {
            "spawn": self.spawn,
            "server_live": self.server_live,
            "model_ready": self.model_ready,
            "first_response": self.first_response,
        }

    def describe(self) -> str:
        """`spawn 0.01s, server live 0.80s, ...` for the log."""
        parts = [f"{name.replace('_', ' ')} {value:.2f}s" for name, value in self.as_dict().items() if value is not None]
        return ", ".join(parts)


@dataclass
class Replica:
    """A Triton process serving the function's model, as the gateway sees it."""

    id: int
    process: TritonProcess
    from_zero: bool = False
    state: State = State.STARTING
    in_flight: int = 0
    served: int = 0
    cold_start: ColdStart = field(default_factory=ColdStart)
    drain_version: int | None = None  # the data plane's version that marked it draining
    _started_at: float = 0.0
    _session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.process.http_url}"

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, force_close=False),
                auto_decompress=False,
            )
        return self._session

    def exited(self) -> bool:
        """True when the process has exited (crashed, or stopped)."""
        return self.process.returncode is not None

    async def start(self, timeout: float) -> None:
        """Spawn Triton and wait until the model is ready; raise TritonStartError on exit or timeout."""
        self._started_at = time.monotonic()
        await asyncio.to_thread(self.process.start)
        self.cold_start.spawn = self._elapsed()
        deadline = self._started_at + timeout
        await self._wait_health("live", deadline)
        self.cold_start.server_live = self._elapsed()
        await self._wait_health("ready", deadline)
        self.cold_start.model_ready = self._elapsed()
        if self.state is State.STARTING:
            self.state = State.READY

    def record_response(self) -> bool:
        """Count a served request; True for the replica's first response (cold start complete)."""
        self.served += 1
        if self.cold_start.first_response is None:
            self.cold_start.first_response = self._elapsed()
            return True
        return False

    async def stop(self, grace: float = 10.0) -> None:
        """Close client connections, then stop the process group (SIGTERM, SIGKILL after `grace`)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        await asyncio.to_thread(self.process.stop, grace)
        if self.state is not State.FAILED:
            self.state = State.STOPPED

    async def forward(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> tuple[int, dict[str, str], bytes]:
        """Send one request to this replica; raises aiohttp.ClientError or asyncio.TimeoutError."""
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with self.session.request(method, url, data=body or None, headers=headers, timeout=client_timeout) as resp:
            payload = await resp.read()
            return resp.status, dict(resp.headers), payload

    async def fetch_metrics(self) -> str:
        """Triton's own Prometheus metrics for this replica."""
        async with self.session.get(self.process.metrics_url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return await resp.text()

    def describe(self, hosts: Mapping[int, HostLoad]) -> dict[str, object]:
        """A JSON-ready summary for the status page; `hosts`: Envoy's requests per replica port."""
        through_envoy = [hosts[port] for port in (self.process.ports.http, self.process.ports.grpc) if port in hosts]
        return {
            "id": self.id,
            "pid": self.process.pid,
            "state": self.state.value,
            "in_flight": self.in_flight + sum(h.active for h in through_envoy),
            "served": self.served + sum(h.total - h.active for h in through_envoy),
            "http": self.process.http_url,
            "grpc": self.process.grpc_url,
            "metrics": self.process.metrics_url,
            "log": str(self.process.log_path),
            "from_zero": self.from_zero,
            "cold_start": self.cold_start.as_dict(),
        }

    def _elapsed(self) -> float:
        return round(time.monotonic() - self._started_at, 4)

    async def _wait_health(self, which: str, deadline: float) -> None:
        url = f"{self.base_url}/v2/health/{which}"
        probe_timeout = aiohttp.ClientTimeout(total=1.0)
        while True:
            code = self.process.returncode
            if code is not None:
                raise TritonStartError(
                    f"tritonserver for model {self.process.model_name!r} exited with status {code} before it was "
                    f"{which}; log {self.process.log_path}:\n{self.process.log_tail(1500)}"
                )
            try:
                async with self.session.get(url, timeout=probe_timeout) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TritonStartTimeout(
                    f"tritonserver for model {self.process.model_name!r} was not {which} within the startup timeout; "
                    f"log {self.process.log_path}:\n{self.process.log_tail(1500)}"
                )
            await asyncio.sleep(POLL_INTERVAL)
