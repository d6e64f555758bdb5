"""`aifn operator`: run the operator with the in-cluster config or the current kubeconfig."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..render.config import OperatorConfig

log = logging.getLogger("aifn.operator")
RESYNC_SECONDS = 300


@dataclass(frozen=True)
class OperatorOptions:
    """How the operator process runs (flags, then AIFN_* environment variables)."""

    namespaces: tuple[str, ...]  # empty: all namespaces
    health_port: int = 8080
    metrics_port: int = 9090
    log_format: str = "text"
    peering: str | None = None  # None: auto (peer as `aifn-operator` if kopf's CRDs exist)
    standalone: bool = False
    priority: int | None = None
    verbose: bool = False

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> OperatorOptions:
        env = os.environ if env is None else env
        namespaces = args.namespace or [ns.strip() for ns in env.get("AIFN_NAMESPACES", "").split(",") if ns.strip()]
        return cls(
            namespaces=tuple(namespaces),
            health_port=args.health_port,
            metrics_port=args.metrics_port,
            log_format=args.log_format or env.get("AIFN_LOG_FORMAT", "text"),
            peering=args.peering,
            standalone=args.standalone,
            priority=args.priority,
            verbose=args.verbose,
        )


def register(subparsers: Any) -> None:
    """Add `aifn operator`."""
    p = subparsers.add_parser("operator", help="run the operator: AIFunctions -> Knative Services (all namespaces by default)")
    p.add_argument("-n", "--namespace", action="append", default=[], help="watch only this namespace (repeatable; env AIFN_NAMESPACES, comma separated)")
    p.add_argument("--health-port", type=int, default=8080, help="GET /healthz and /readyz (default 8080; 0 disables)")
    p.add_argument("--metrics-port", type=int, default=9090, help="GET /metrics (default 9090; 0 disables)")
    p.add_argument("--log-format", choices=["text", "json"], default=None, help="log format (env AIFN_LOG_FORMAT, default text)")
    peering = p.add_mutually_exclusive_group()
    peering.add_argument("--peering", metavar="NAME", help="coordinate with other replicas through kopf peering object NAME (created if missing)")
    peering.add_argument("--standalone", action="store_true", help="run without peering (one replica only)")
    p.add_argument("--priority", type=int, default=None, help="peering priority; the highest live replica works, the others wait (default: random)")
    p.add_argument("--triton-image", default=None, help="Triton image for functions that name none (env AIFN_TRITON_IMAGE)")
    p.add_argument("--storage-initializer-image", default=None, help="KServe storage-initializer image (env AIFN_STORAGE_INITIALIZER_IMAGE)")
    p.add_argument("--knative-namespace", default=None, help="where Knative's config-features/config-autoscaler live (env AIFN_KNATIVE_NAMESPACE, default knative-serving)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, kopf's included")
    p.set_defaults(command=run_operator)


def run_operator(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; returns the exit code."""
    from ..controller.observability import configure_logging

    options = OperatorOptions.from_args(args)
    config = with_flags(OperatorConfig.from_env(), args)
    configure_logging(options.log_format, options.verbose)
    from kubernetes.config import ConfigException

    from ..controller.kube_client import ApiError
    from ..controller.peering import PeeringUnavailable

    try:
        asyncio.run(_main(options, config))
    except KeyboardInterrupt:
        pass
    except ConfigException as exc:
        log.error("no cluster to talk to: %s (set KUBECONFIG, or run in a pod with a service account)", exc)
        return 1
    except (PeeringUnavailable, ApiError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    _exit_now(0)
    return 0


def _exit_now(code: int) -> None:
    """Leave without interpreter finalization once the operator has stopped cleanly.

    The ConfigMap watch thread may sit in a blocking socket read (up to its 30 s watch
    timeout); finalizing the interpreter under a daemon thread that logs aborts the process
    (SIGABRT, "could not acquire lock ... at interpreter shutdown"). Everything that matters
    (kopf, peering record, HTTP endpoints) is already closed, so flush and exit directly.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def with_flags(config: OperatorConfig, args: argparse.Namespace) -> OperatorConfig:
    """Flags given on the command line win over the environment."""
    flags = {"triton_image": args.triton_image, "storage_initializer_image": args.storage_initializer_image, "knative_namespace": args.knative_namespace}
    return replace(config, **{key: value for key, value in flags.items() if value})


async def _main(options: OperatorOptions, config: OperatorConfig) -> None:
    import kopf

    from ..controller import wiring
    from ..controller.kube_client import KubeClient, load_api_client
    from ..controller.observability import Metrics, health_app, metrics_app, serve
    from ..controller.peering import PeeringGate, ensure_peering, own_identity
    from ..controller.state import OperatorState

    if os.environ.get("POD_NAME") and not os.environ.get("POD_ID"):
        os.environ["POD_ID"] = os.environ["POD_NAME"]  # kopf's peering identity
    kube = KubeClient(load_api_client())
    metrics = Metrics()
    state = OperatorState(kube, config, metrics)
    registry = kopf.OperatorRegistry()
    wiring.register(registry, state)
    settings = kopf.OperatorSettings()
    wiring.configure(settings)
    settings.scanning.disabled = bool(options.namespaces)  # exact namespaces: no cluster-wide namespace/CRD watches
    settings.peering.priority = options.priority if options.priority is not None else random.randint(1, 1_000_000)

    peering_name, standalone = await asyncio.to_thread(ensure_peering, kube, options.peering, options.standalone, options.namespaces)
    identity = own_identity()
    if not standalone:
        state.gate = PeeringGate(kube, peering_name or "", options.namespaces, identity, settings.peering.priority)
    ready = asyncio.Event()
    runners = []
    if options.health_port:
        runners.append(await serve(health_app(lambda: ready.is_set() and state.knative_loaded.is_set(), state.alive), options.health_port))
    if options.metrics_port:
        runners.append(await serve(metrics_app(metrics), options.metrics_port))
    state.start_knative_watch(asyncio.get_running_loop())
    await asyncio.to_thread(state.knative_loaded.wait, 10)
    resync = asyncio.create_task(_resync(state))
    scope = ", ".join(options.namespaces) or "all namespaces"
    log.info("aifn operator starting: %s; Triton image %s; Knative settings from %s; %s", scope, config.triton_image, config.knative_namespace, f"peering {peering_name!r} priority {settings.peering.priority}" if not standalone else "standalone")
    try:
        await kopf.operator(
            registry=registry,
            settings=settings,
            clusterwide=not options.namespaces,
            namespaces=list(options.namespaces),
            standalone=standalone,
            peering_name=peering_name,
            priority=settings.peering.priority,
            identity=identity,  # type: ignore[arg-type]  # kopf's Identity is a NewType of str
            ready_flag=ready,
        )
    finally:
        resync.cancel()
        state.stop()
        for runner in runners:
            await runner.cleanup()
        log.info("aifn operator stopped")


async def _resync(state: Any) -> None:
    """Re-check every function now and then, in case an event was missed."""
    while True:
        await asyncio.sleep(RESYNC_SECONDS)
        await state.reconcile_all()
