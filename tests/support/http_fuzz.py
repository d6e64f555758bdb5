"""HTTP fuzzing over raw sockets: malformed requests that well-behaved clients refuse to send.

`cases(rng, path, valid_body, n)` yields `Case`s for one POST endpoint: random and truncated
bodies, wrong content types, Content-Length that is too long (the client then stops sending)
or too short (the rest is a garbage second request), Inference-Header-Content-Length values
that lie, huge and many headers, broken request lines, deep JSON, lying binary tensor sizes.
`send(host, port, case)` writes the bytes and reads what comes back, with a deadline: a
server that neither answers nor closes within it is a hang.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Case:
    kind: str
    request: bytes
    half_close: bool = False  # shut down the write side after sending (the server then sees EOF)
    expect_response: bool = True  # False: the server may also just close (a request it cannot frame)


@dataclass
class Outcome:
    status: int | None  # None: closed without a response
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    seconds: float = 0.0
    raw: bytes = b""

    def json_error(self) -> bool:
        """A JSON object with an `error` (the shape every error of the gateway and the runtime has)."""
        if "json" not in self.headers.get("content-type", ""):
            return False
        try:
            return isinstance(json.loads(self.body), dict)
        except ValueError:
            return False


class Hang(AssertionError):
    pass


def request(method: str, path: str, headers: list[tuple[str, str]], body: bytes, *, length: int | None = None,
            host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def send(host: str, port: int, case: Case, timeout: float = 20.0) -> Outcome:
    """Send one case; read the first response (or the close). Raises Hang past `timeout`."""
    started = time.monotonic()
    data = b""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(case.request)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before reading everything: read its answer
        sock.settimeout(0.5)
        while True:
            if time.monotonic() - started > timeout:
                raise Hang(f"{case.kind}: no response and no close within {timeout:.0f}s (got {data[:200]!r})")
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
            if _complete(data):
                break
    return _parse(data, time.monotonic() - started)


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(rest) >= int(value.strip())
    return False  # no length: read until close


def _parse(data: bytes, seconds: float) -> Outcome:
    if not data:
        return Outcome(None, seconds=seconds)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return Outcome(None, body=body, seconds=seconds, raw=data)
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Outcome(status, headers, body, seconds, data)


CONTENT_TYPES = ["application/json", "text/plain", "application/octet-stream", "multipart/form-data; boundary=x",
                 "application/x-www-form-urlencoded", "application/json; charset=utf-16", "", "\x7f", "application/cloudevents+json",
                 "application/json;;;", "image/png"]


def _random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))


def _deep(depth: int) -> bytes:
    return b'{"inputs": ' + b"[" * depth + b"]" * depth + b"}"


def cases(rng: random.Random, path: str, valid: bytes, count: int, *, tensor_input: str = "image") -> Iterator[Case]:
    """`count` cases against POST `path`, drawn with `rng` (a fixed seed reproduces the run)."""
    kinds = [
        "random-body", "truncated-body", "content-type", "length-too-long", "length-too-short", "binary-header-lies",
        "binary-size-lies", "huge-header", "many-headers", "bad-request-line", "deep-json", "wrong-shapes", "bad-method",
        "chunked-garbage", "json-noise",
    ]
    for index in range(count):
        kind = kinds[index % len(kinds)]
        ctype = rng.choice(CONTENT_TYPES)
        if kind == "random-body":
            body = _random_bytes(rng, rng.choice([0, 1, 7, 100, 4096]))
            yield Case(kind, request("POST", path, [("Content-Type", ctype)], body, length=len(body)))
        elif kind == "truncated-body":
            body = valid[: rng.randrange(0, len(valid))]
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], body, length=len(body)))
        elif kind == "content-type":
            yield Case(kind, request("POST", path, [("Content-Type", ctype), ("Content-Encoding", rng.choice(["gzip", "br", "x", "identity"]))],
                                     valid, length=len(valid)))
        elif kind == "length-too-long":
            cut = rng.randrange(0, len(valid))
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], valid[:cut], length=len(valid) + rng.choice([1, 1000, 10**9])),
                       half_close=True, expect_response=False)
        elif kind == "length-too-short":
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], valid, length=rng.randrange(0, len(valid))))
        elif kind == "binary-header-lies":
            value = rng.choice(["-1", "0", str(len(valid) + 1), str(10**30), "abc", "1e3", " 5", str(len(valid) // 2), "0x10", "", "٣", "1_0"])
            yield Case(kind, request("POST", path, [("Content-Type", "application/octet-stream"), ("Inference-Header-Content-Length", value)],
                                     valid, length=len(valid)))
        elif kind == "binary-size-lies":
            declared, sent = rng.choice([(256, 10), (256, 300), (0, 256), (10**12, 256), (-4, 256), (255, 256)])
            header = json.dumps({"inputs": [{"name": tensor_input, "shape": [1, 8, 8], "datatype": "FP32",
                                             "parameters": {"binary_data_size": declared}}]}).encode()
            body = header + _random_bytes(rng, sent)
            yield Case(kind, request("POST", path, [("Content-Type", "application/octet-stream"),
                                                    ("Inference-Header-Content-Length", str(len(header)))], body, length=len(body)))
        elif kind == "huge-header":
            size = rng.choice([9000, 70000, 300000])
            yield Case(kind, request("POST", path, [("X-Big", "a" * size)], valid, length=len(valid)), expect_response=False)
        elif kind == "many-headers":
            headers = [(f"X-H{i}", "v") for i in range(rng.choice([200, 2000]))]
            yield Case(kind, request("POST", path, headers, valid, length=len(valid)), expect_response=False)
        elif kind == "bad-request-line":
            line = rng.choice([b"POST\r\n\r\n", b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", b"POST " + path.encode() + b" HTTP/9.9\r\n\r\n",
                               b"POST /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost\r\n\r\n",
                               b"POST " + path.encode() + b" HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
                               b"POST " + path.encode() + b" HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"])
            yield Case(kind, line, expect_response=False)
        elif kind == "deep-json":
            body = _deep(rng.choice([100, 1000, 100000]))
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], body, length=len(body)))
        elif kind == "wrong-shapes":
            item = {"name": rng.choice([tensor_input, "nope", "", 5]), "shape": rng.choice([[1, 8, 8], [2**62, 2**62], [-1, 64], [1, 64], "x", []]),
                    "datatype": rng.choice(["FP32", "INT8", "BYTES", "BOGUS", 3])}
            if rng.random() < 0.8:
                item["data"] = rng.choice([[0.0] * 64, [], ["a"] * 64, [[[0.0] * 8] * 8], None, 1e308, [float("1e400")] if False else [1e38] * 64])
            body = json.dumps({"inputs": [item], "outputs": rng.choice([[], [{"name": "label"}], "x", [{"name": "nope"}]])}).encode()
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], body, length=len(body)))
        elif kind == "bad-method":
            yield Case(kind, request(rng.choice(["PUT", "DELETE", "PATCH", "FOO", "OPTIONS", "TRACE"]), path, [], valid, length=len(valid)))
        elif kind == "chunked-garbage":
            body = rng.choice([b"zz\r\nabc\r\n0\r\n\r\n", b"5\r\nab", b"ffffffffffffffff\r\n", b"0\r\n\r\n"])
            yield Case(kind, request("POST", path, [("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")], body),
                       expect_response=False)
        else:  # json-noise: valid JSON of the wrong shape
            value = rng.choice([None, 1, "x", [], {}, {"inputs": None}, {"inputs": [None]}, {"inputs": [{}]}, {"pixels": "x"},
                                {"pixels": [1] * 63}, {"images": [[1] * 64] * 3}, {"pixels": [17] * 64}, {"inputs": "a" * 1000}])
            body = json.dumps(value).encode()
            yield Case(kind, request("POST", path, [("Content-Type", "application/json")], body, length=len(body)))
