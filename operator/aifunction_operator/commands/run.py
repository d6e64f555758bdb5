"""`aifn run FILE.yaml`: serve a function on this machine with a real Triton, scaling from and to zero."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .arguments import duration
from .inputs import InputError, load_functions

EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3


def register(subparsers: Any) -> None:
    """Add `run`."""
    p = subparsers.add_parser(
        "run",
        help="serve a function locally with a real Triton (starts on the first request, stops when idle)",
        description="Serve an AIFunction on this machine: the KServe v2 HTTP API of its model on --host:--port, "
        "Triton replicas started on demand and stopped after --idle-timeout without requests.",
    )
    p.add_argument("filename", help="AIFunction YAML file")
    p.add_argument("--host", default="127.0.0.1", help="address the gateway binds (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="gateway HTTP port (default 8080; 0 picks a free one)")
    p.add_argument("--grpc-port", type=int, default=None, help="gRPC port for functions with protocol grpc (default: a free one)")
    p.add_argument("--model-repo", default=None, help="local model repository directory (overrides the function's)")
    p.add_argument("--idle-timeout", type=duration, default=60.0, help="scale to zero after this long without requests (default 60s)")
    p.add_argument("--queue-limit", type=_count(0), default=256, help="requests held while replicas start or are busy (default 256)")
    p.add_argument("--max-body-bytes", type=_count(1), default=16 * 1024 * 1024, help="largest request body (default 16 MiB)")
    p.add_argument("--read-timeout", type=duration, default=60.0,
                   help="a request's head and body must arrive within this; idle keep-alive connections close after it (default 60s)")
    p.add_argument("--max-connections", type=_count(1), default=None,
                   help="open client connections; more get 503 and are closed (default: half the open-file limit, at most 4096)")
    p.add_argument("--max-replicas", type=_count(1), default=None, help="replicas when the function sets no maxReplicas (default: CPU count)")
    p.add_argument("--log-dir", type=Path, default=None, help="where Triton replica logs go (default: a temp directory)")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C / SIGTERM; returns the exit code."""
    from ..local.model_download import RepositoryError, resolve_repository  # noqa: PLC0415 - keep `aifn render` light
    from ..local.serve import Endpoints, ListenError, RunOptions, serve  # noqa: PLC0415
    from ..local.envoy_process import EnvoyUnavailable  # noqa: PLC0415
    from ..local.tritonserver import TritonUnavailable  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s aifn: %(message)s", stream=sys.stderr)
    try:
        functions = load_functions(args.filename)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    if len(functions) != 1:
        print(f"{args.filename}: holds {len(functions)} functions; aifn run serves one per file", file=sys.stderr)
        return EXIT_INVALID
    fn = functions[0]
    try:
        repository = resolve_repository(fn, Path(args.filename), args.model_repo)
    except RepositoryError as exc:
        print(f"{args.filename}: {exc}", file=sys.stderr)
        return EXIT_INVALID
    handler = None
    if fn.spec.handler is not None:  # the handler runtime (and its dependencies) only when used
        from ..handler.errors import HandlerLoadError  # noqa: PLC0415
        from ..local.handler import LocalHandler, LocalHandlerError  # noqa: PLC0415

        try:
            handler = LocalHandler.for_function(fn, Path(args.filename))
        except (LocalHandlerError, HandlerLoadError) as exc:
            print(f"{args.filename}: spec.handler: {exc}", file=sys.stderr)
            return EXIT_INVALID
    options = RunOptions(
        host=args.host,
        port=args.port,
        grpc_port=args.grpc_port,
        idle_timeout=args.idle_timeout,
        queue_limit=args.queue_limit,
        max_body_bytes=args.max_body_bytes,
        read_timeout=args.read_timeout or 60.0,
        max_connections=args.max_connections,
        max_replicas=args.max_replicas,
        log_dir=args.log_dir,
    )

    def announce(endpoints: Endpoints) -> None:
        grpc = f", gRPC at {endpoints.grpc}" if endpoints.grpc else ""
        warm = fn.spec.scaling.min_replicas
        replicas = f"{warm} Triton replica(s) kept warm" if warm else "no Triton runs until the first request"
        print(
            f"aifn run: serving function {fn.name} (model {fn.spec.model.name}) at {endpoints.http}{grpc}; "
            f"{replicas}; replica logs in {endpoints.log_dir}",
            flush=True,
        )
        if handler is not None:
            print(f"aifn run: handler {fn.spec.handler.entrypoint} answers POST {endpoints.http}/ and /invoke", flush=True)

    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(serve(fn, repository, options, on_ready=announce, handler=handler))
    except (TritonUnavailable, EnvoyUnavailable) as exc:
        print(f"aifn run: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ListenError as exc:
        print(f"aifn run: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    print("aifn run: stopped", flush=True)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (a faster gateway), else asyncio's."""
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        return None
    return uvloop.new_event_loop


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least `minimum`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse
