"""`aifn run` forwards only the model's own calls: Triton's admin APIs are refused, inference works.

Through the gateway (real Triton behind it) every repository, shared-memory, trace and logging
path gets a JSON 403, also spelled with `..` segments (which the gateway's HTTP client would
otherwise normalize into the admin path before forwarding: before the fix the first of them
unloaded the model), and the model stays loaded.
"""

from __future__ import annotations

import pytest
from support.rawwire import http1

from .conftest import digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

INFER = "/v2/models/digits/infer"
IMAGE = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]
ADMIN_PATHS = [
    ("POST", "/v2/models/digits/../../repository/models/digits/unload"),
    ("POST", "/v2/models/digits/%2e%2e/%2e%2e/repository/models/digits/unload"),
    ("POST", "/v2/models/digits/versions/1/../../../../repository/models/digits/unload"),
    ("POST", "/v2/repository/models/digits/unload"),
    ("POST", "/v2/repository/models/other/load"),
    ("POST", "/v2/repository/index"),
    ("GET", "/v2/systemsharedmemory/status"),
    ("POST", "/v2/systemsharedmemory/region/r0/register"),
    ("GET", "/v2/cudasharedmemory/status"),
    ("GET", "/v2/trace/setting"),
    ("POST", "/v2/models/digits/trace/setting"),
    ("POST", "/v2/models/digits/versions/1/trace/setting"),
    ("GET", "/v2/logging"),
    ("POST", "/v2/logging"),
]


def test_admin_paths_are_refused_and_inference_still_works(run_function) -> None:
    run = run_function(args=("--idle-timeout", "60s"))
    assert run.post(INFER, digits_request([IMAGE])).status == 200  # a replica is running
    host, port = run.url.removeprefix("http://").split(":")
    for method, path in ADMIN_PATHS:
        raw = http1(host, int(port), method, path, [("Content-Type", "application/json")], b"{}")
        assert raw.startswith(b"HTTP/1.1 403"), f"{method} {path}: {raw[:300]!r}"
        assert b'"error":' in raw and b"not exposed by aifn" in raw, raw
        assert run.get("/v2/models/digits/ready").status == 200, f"{method} {path} unloaded the model"
    assert run.post(INFER, digits_request([IMAGE])).status == 200
    for path in ("/v2/models/digits", "/v2/models/digits/config", "/v2/models/digits/stats", "/v2/models/digits/versions/1/ready"):
        assert run.get(path).status == 200, path
