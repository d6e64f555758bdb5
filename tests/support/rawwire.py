"""Requests written byte by byte, so that a test can send what well-behaved clients refuse to.

`http1` sends one HTTP/1.1 request with headers exactly as given; `grpc_unary` sends one gRPC
call over cleartext HTTP/2 (prior knowledge) with arbitrary metadata names, HPACK literals
without Huffman coding, and returns the frames that came back on the call's stream.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY = 0x0, 0x1, 0x3, 0x4, 0x7
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def http1(host: str, port: int, method: str, path: str, headers: list[tuple[str, str]], body: bytes = b"", timeout: float = 10.0) -> bytes:
    """The raw response (status line, headers, body) to one HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers]
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        response = b""
        while chunk := sock.recv(65536):  # until the body is complete: servers may ignore Connection: close
            response += chunk
            head, sep, rest = response.partition(b"\r\n\r\n")
            lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if sep and len(rest) >= (lengths[0] if lengths else 0):
                break
    return response


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    stream: int
    payload: bytes


def grpc_unary(host: str, port: int, method: str, message: bytes, metadata: list[tuple[bytes, bytes]], timeout: float = 10.0) -> list[Frame]:
    """Frames received for one unary call on stream 1 (HEADERS, DATA, RST_STREAM) until it ends."""
    fields = [(b":method", b"POST"), (b":scheme", b"http"), (b":path", method.encode()), (b":authority", f"{host}:{port}".encode()),
              (b"content-type", b"application/grpc"), (b"te", b"trailers"), *metadata]
    block = b"".join(b"\x00" + _hpack_int(len(k)) + k + _hpack_int(len(v)) + v for k, v in fields)
    body = b"\x00" + struct.pack(">I", len(message)) + message
    received: list[Frame] = []
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(PREFACE + _frame(SETTINGS, 0, 0, b"") + _frame(HEADERS, END_HEADERS, 1, block) + _frame(DATA, END_STREAM, 1, body))
        buffer = b""
        while chunk := sock.recv(65536):
            buffer += chunk
            while len(buffer) >= 9 and len(buffer) >= 9 + int.from_bytes(buffer[:3], "big"):
                length = int.from_bytes(buffer[:3], "big")
                frame = Frame(buffer[3], buffer[4], int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF, buffer[9:9 + length])
                buffer = buffer[9 + length:]
                if frame.type == SETTINGS and not frame.flags & ACK:
                    sock.sendall(_frame(SETTINGS, ACK, 0, b""))
                if frame.stream == 1:
                    received.append(frame)
                if frame.type == GOAWAY or (frame.stream == 1 and (frame.type == RST_STREAM or frame.flags & END_STREAM)):
                    return received
    return received


def _hpack_int(value: int) -> bytes:
    """An HPACK integer with a 7-bit prefix and the Huffman bit clear."""
    if value < 127:
        return bytes([value])
    out, value = [127], value - 127
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload
