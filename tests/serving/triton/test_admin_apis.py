"""A real Triton started with the rendered Service's own arguments refuses its admin APIs.

Triton runs the digits model with the Triton container's args from `aifn render` of
examples/digits.yaml; only the model repository, ports and a loopback bind are replaced
(what `aifn run` replaces too). Repository, shared-memory, trace and logging calls are refused
over HTTP and gRPC, also when a raw client sends the restriction's header name, while
inference, metadata and the probes' health calls work and the model stays loaded. A control
run shows that the same raw clients do unload the model when the header is a sendable one, so
the refusal comes from the header name, not from the clients.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import yaml
from support.rawwire import RST_STREAM, grpc_unary, http1
from support.triton import serving
from tritonclient.utils import InferenceServerException

from aifunction_operator.render.config import OperatorConfig
from aifunction_operator.local.tritonserver import TritonInstall, TritonProcess
from aifunction_operator.render import render
from aifunction_operator.triton_command import UNSENDABLE_HEADER
from aifunction_operator.spec import parse_function

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[3]
MODEL_REPO = ROOT / "model_repo"
UNLOAD = "/inference.GRPCInferenceService/RepositoryModelUnload"
UNLOAD_DIGITS = b"\x12\x06digits"  # RepositoryModelUnloadRequest{model_name: "digits"}
REPLACED = ("--model-repository=", "--http-port=", "--grpc-port=", "--metrics-port=")
IMAGE = np.arange(64, dtype=np.float32).reshape(1, 8, 8) % 17

HTTP_ADMIN_CALLS = [
    ("POST", "/v2/repository/models/digits/unload", b"{}"),
    ("POST", "/v2/repository/models/other/load", b"{}"),
    ("POST", "/v2/repository/index", b"{}"),
    ("GET", "/v2/systemsharedmemory/status", b""),
    ("POST", "/v2/systemsharedmemory/region/r0/register", b'{"key": "/r0", "offset": 0, "byte_size": 64}'),
    ("GET", "/v2/cudasharedmemory/status", b""),
    ("GET", "/v2/trace/setting", b""),
    ("POST", "/v2/models/digits/trace/setting", b'{"trace_level": ["TIMESTAMPS"]}'),
    ("GET", "/v2/logging", b""),
    ("POST", "/v2/logging", b'{"log_verbose_level": 1}'),
]


def rendered_triton_args() -> list[str]:
    """The Triton container's args as `aifn render` writes them for examples/digits.yaml."""
    fn = parse_function(yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text()))
    service = render(fn, OperatorConfig())[0]
    (triton,) = [c for c in service["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    return list(triton["args"])


class RenderedTriton(TritonProcess):
    """tritonserver run with rendered args; the repository, ports and bind address made local."""

    def __init__(self, install: TritonInstall, args: list[str], log_path: Path) -> None:
        super().__init__(install, MODEL_REPO, "digits", log_path=log_path)
        self.rendered = args

    def command(self) -> list[str]:
        local = [
            f"--model-repository={MODEL_REPO}", f"--http-port={self.ports.http}", f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}", f"--http-address={self.host}", f"--grpc-address={self.host}",
            f"--metrics-address={self.host}", *self.install.server_args(),
        ]
        return [str(self.install.binary), *[a for a in self.rendered if not a.startswith(REPLACED)], *local]


def serve(install: TritonInstall, args: list[str], log_path: Path) -> Iterator[RenderedTriton]:
    with serving(RenderedTriton(install, args, log_path), "rendered args") as server:
        yield server


@pytest.fixture(scope="module")
def rendered_server(triton_install: TritonInstall, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RenderedTriton]:
    yield from serve(triton_install, rendered_triton_args(), tmp_path_factory.mktemp("rendered") / "tritonserver.log")


def model_ready(server: TritonProcess) -> bool:
    return bool(httpclient.InferenceServerClient(server.http_url).is_model_ready("digits"))


def infer_http(server: TritonProcess) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("image", [1, 8, 8], "FP32")
    tensor.set_data_from_numpy(IMAGE)
    return client.infer("digits", [tensor]).as_numpy("probabilities")


def test_rendered_args_restrict_the_admin_apis() -> None:
    args = rendered_triton_args()
    assert any(a.startswith("--http-restricted-api=") and "model-repository" in a and "shared-memory" in a for a in args), args
    assert any(a.startswith("--grpc-restricted-protocol=") and "model-repository" in a and "shared-memory" in a for a in args), args


@pytest.mark.parametrize(("method", "path", "body"), HTTP_ADMIN_CALLS, ids=[f"{m} {p}" for m, p, _ in HTTP_ADMIN_CALLS])
def test_http_admin_calls_are_refused(rendered_server: RenderedTriton, method: str, path: str, body: bytes) -> None:
    request = urllib.request.Request(f"http://{rendered_server.http_url}{path}", data=body or None, method=method)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 403, f"{method} {path}: {refused.value.code} {refused.value.read()[:200]!r}"
    assert model_ready(rendered_server)


def test_grpc_admin_calls_are_refused(rendered_server: RenderedTriton) -> None:
    client = grpcclient.InferenceServerClient(rendered_server.grpc_url)
    calls = {
        "unload": lambda: client.unload_model("digits"),
        "load": lambda: client.load_model("other"),
        "repository index": client.get_model_repository_index,
        "shared memory": client.get_system_shared_memory_status,
        "register shared memory": lambda: client.register_system_shared_memory("r0", "/r0", 64),
        "trace": client.get_trace_settings,
        "logging": client.get_log_settings,
    }
    for name, call in calls.items():
        with pytest.raises(InferenceServerException, match="restricted"):
            call()
        assert model_ready(rendered_server), f"{name}: the model was unloaded"


def test_the_restriction_header_cannot_be_sent(rendered_server: RenderedTriton) -> None:
    """The header name has a ':': HTTP/1.1 ends the name there, gRPC resets the stream."""
    raw = http1(rendered_server.host, rendered_server.ports.http, "POST", "/v2/repository/models/digits/unload",
                [(UNSENDABLE_HEADER, "never")], b"{}")
    assert raw.startswith(b"HTTP/1.1 403"), raw[:300]
    frames = grpc_unary(rendered_server.host, rendered_server.ports.grpc, UNLOAD, UNLOAD_DIGITS,
                        [(f"triton-grpc-protocol-{UNSENDABLE_HEADER}".encode(), b"never")])
    assert [f.type for f in frames] == [RST_STREAM], frames
    assert model_ready(rendered_server)


def test_inference_metadata_and_health_still_work(rendered_server: RenderedTriton) -> None:
    assert infer_http(rendered_server).shape == (1, 10)
    client = grpcclient.InferenceServerClient(rendered_server.grpc_url)
    tensor = grpcclient.InferInput("image", [1, 8, 8], "FP32")
    tensor.set_data_from_numpy(IMAGE)
    assert client.infer("digits", [tensor]).as_numpy("probabilities").shape == (1, 10)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits")
    assert client.get_model_metadata("digits").name == "digits"
    http = httpclient.InferenceServerClient(rendered_server.http_url)
    assert http.is_server_live() and http.is_server_ready()
    assert http.get_model_config("digits")["name"] == "digits"
    assert http.get_inference_statistics("digits")["model_stats"][0]["name"] == "digits"


def test_control_the_raw_clients_unload_when_the_header_is_sendable(triton_install: TritonInstall, tmp_path: Path) -> None:
    """Same args with a sendable header name: the raw gRPC call unloads, so the refusal above is the header's doing."""
    args = [a.replace(UNSENDABLE_HEADER, "aifn-admin") for a in rendered_triton_args()]
    for server in serve(triton_install, args, tmp_path / "tritonserver.log"):
        frames = grpc_unary(server.host, server.ports.grpc, UNLOAD, UNLOAD_DIGITS, [(b"triton-grpc-protocol-aifn-admin", b"never")])
        assert RST_STREAM not in [f.type for f in frames] and b"grpc-status\x010" in b"".join(f.payload for f in frames), frames
        assert not model_ready(server)
        raw = http1(server.host, server.ports.http, "POST", "/v2/repository/models/digits/load", [("aifn-admin", "never")], b"{}")
        assert raw.startswith(b"HTTP/1.1 200"), raw[:300]
        assert model_ready(server)
