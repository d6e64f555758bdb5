"""The handler runtime's settings, read from the environment the renderer (or `aifn run`) sets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_HANDLER_PATH = "/opt/aifn/handler"
DEFAULT_TRITON_URL = "127.0.0.1:8000"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 64
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024  # as `aifn run --max-body-bytes`


@dataclass(frozen=True)
class HandlerSettings:
    """Where the user's code is, which Triton model it calls, and where the runtime listens."""

    entrypoint: str
    model_name: str
    handler_path: str = DEFAULT_HANDLER_PATH
    triton_url: str = DEFAULT_TRITON_URL
    model_version: str = ""
    function_name: str = ""
    port: int = DEFAULT_PORT
    threads: int = DEFAULT_THREADS
    request_timeout: float = 300.0
    triton_client: str = "fast"
    execution: str = "threads"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerSettings:
        """Read AIFN_HANDLER_ENTRYPOINT, AIFN_MODEL_NAME, ... ; ValueError names a missing or bad variable."""
        env = os.environ if env is None else env
        missing = [k for k in ("AIFN_HANDLER_ENTRYPOINT", "AIFN_MODEL_NAME") if not env.get(k)]
        if missing:
            raise ValueError(f"environment variable(s) {', '.join(missing)} must be set")
        model_name = env["AIFN_MODEL_NAME"]
        return cls(
            entrypoint=env["AIFN_HANDLER_ENTRYPOINT"],
            model_name=model_name,
            handler_path=env.get("AIFN_HANDLER_PATH") or DEFAULT_HANDLER_PATH,
            triton_url=_strip_scheme(env.get("AIFN_TRITON_URL") or DEFAULT_TRITON_URL),
            model_version=env.get("AIFN_MODEL_VERSION", ""),
            function_name=env.get("AIFN_FUNCTION_NAME") or model_name,
            port=_int(env, "PORT", DEFAULT_PORT),
            threads=_int(env, "AIFN_HANDLER_THREADS", DEFAULT_THREADS),
            request_timeout=float(_int(env, "AIFN_REQUEST_TIMEOUT_SECONDS", 300)),
            triton_client=_choice(env, "AIFN_TRITON_CLIENT", ("fast", "tritonclient")),
            execution=_choice(env, "AIFN_HANDLER_EXECUTION", ("threads", "inline")),
            max_body_bytes=_int(env, "AIFN_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        )


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {key}={raw!r} is not an integer") from None
    if value <= 0:
        raise ValueError(f"environment variable {key}={raw!r} must be positive")
    return value


def _strip_scheme(url: str) -> str:
    for scheme in ("http://", "https://"):
        if url.startswith(scheme):
            return url[len(scheme):]
    return url.rstrip("/")


def _choice(env: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    raw = env.get(key) or choices[0]
    if raw not in choices:
        raise ValueError(f"environment variable {key}={raw!r} must be one of {', '.join(choices)}")
    return raw
