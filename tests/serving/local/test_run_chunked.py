"""`aifn run` never passes a chunked request on to Triton: the body is read whole and forwarded with a length.

The wheel's Triton is 2.51.0, older than NVIDIA's fix (25.07) for CVE-2025-23310/23311, a
stack overflow in its HTTP server from many small chunks: sent directly to it, the request
below (2,000,000 one-byte chunks) ended the server with SIGSEGV when this test was written.
Through the gateway the same request is an ordinary inference, and the replica keeps serving.
"""

from __future__ import annotations

import socket

import pytest

from .conftest import digits_request

pytestmark = [pytest.mark.triton, pytest.mark.slow, pytest.mark.timeout(240)]

INFER = "/v2/models/digits/infer"
IMAGE = [[float((r * 8 + c) % 17) for c in range(8)] for r in range(8)]
CHUNKS = 2_000_000


def chunked_infer(host: str, port: int, body: bytes) -> bytes:
    """POST `body` (padded with JSON whitespace to CHUNKS bytes) as one-byte chunks; the raw response head."""
    padded = body + b" " * (CHUNKS - len(body))
    head = f"POST {INFER} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    with socket.create_connection((host, port), timeout=120) as sock:
        sock.sendall(head.encode())
        sock.sendall(b"".join(b"1\r\n" + padded[i:i + 1] + b"\r\n" for i in range(len(padded))) + b"0\r\n\r\n")
        return sock.recv(4096)


def test_many_small_chunks_reach_triton_as_one_sized_body(run_function) -> None:
    run = run_function(args=("--idle-timeout", "60s"))
    assert run.post(INFER, digits_request([IMAGE])).status == 200
    (replica,) = run.status()["replicas"]
    host, port = run.url.removeprefix("http://").split(":")
    response = chunked_infer(host, int(port), digits_request([IMAGE]))
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    (after,) = run.status()["replicas"]
    assert after["pid"] == replica["pid"] and after["state"] == "ready", after
    assert run.post(INFER, digits_request([IMAGE])).status == 200
