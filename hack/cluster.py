"""`make cluster` / `make cluster-down`: a real Kubernetes cluster on this machine, without Docker.

up (default): start it in the foreground until Ctrl-C (or SIGTERM), then remove everything it made.
      Every node gets the images pods here use: pause, CoreDNS, busybox, the operator image
      (localhost/aifn/aifunction-operator:dev), Triton (localhost/aifn/tritonserver:2.51-cpu; Revisions
      name it dev.local/aifn/tritonserver:2.51-cpu), the handler runtime, Knative Serving's and
      Envoy's; the CPU worker also Knative Eventing's. Then it installs Knative Serving 1.23, the
      networking layer (aifn-ingress + Envoy, NodePort 31080), Knative Eventing 1.22 (core,
      in-memory channel, MT channel broker) and the operator (helm), and writes the gateway's
      address to .aifn/cluster/gateway.
down: remove a cluster (or what a killed run left) from this host: processes, containers, mounts,
      network namespaces and interfaces, iptables rules, cgroups. `--purge` also drops the nodes'
      image stores (a cache).
status: say what of a cluster is on this host.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster import Cluster, ClusterRunning, HostProblem, clean, find_leftovers  # noqa: E402
from support.cluster.layout import KUBECONFIG, NODES, RUN_DIR, USER_DIR  # noqa: E402
from support.cluster.stack import GATEWAY_FILE  # noqa: E402


DOWN_REQUESTED = RUN_DIR / "down-requested"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def up(app_images: bool = True, stack: bool = True) -> int:
    """Start the cluster, print how to use it, and serve until interrupted."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    cluster = Cluster(log=lambda line: print(line, flush=True), app_images=app_images,
                      stack=stack and app_images)
    try:
        cluster.start()
    except (HostProblem, ClusterRunning) as problem:
        print(f"cluster: {problem}", file=sys.stderr)
        if isinstance(problem, HostProblem):
            cluster.stop()
        return 2
    except KeyboardInterrupt:
        print("\ncluster: interrupted while starting; removing what was made", file=sys.stderr)
        cluster.stop()
        return 130
    except (RuntimeError, TimeoutError) as failed:
        print(f"cluster: failed to start: {failed}\ncomponent logs: {USER_DIR / 'logs'}", file=sys.stderr)
        cluster.stop()
        return 1
    try:
        print(f"\ncluster ready in {cluster.timings['total']:.0f}s: nodes "
              f"{', '.join(node.name for node in NODES)}; component logs in {cluster.log_dir}")
        print("use it with:\n")
        print(f"export KUBECONFIG={KUBECONFIG}\n", flush=True)
        if cluster.gateway_url:
            print(f"functions answer at {cluster.gateway_url} (written to {GATEWAY_FILE}):\n"
                  f"curl -H 'Host: <name>.<namespace>.example.com' $(cat {GATEWAY_FILE})/v2/models\n", flush=True)
        print("Ctrl-C (or `make cluster-down` from another shell) stops it and removes everything.", flush=True)
        while not cluster.dead_components():
            time.sleep(1)
        if not RUN_DIR.exists() or DOWN_REQUESTED.exists():
            cluster.release()  # `down` removes everything; two clean-ups at once would race
            print("cluster: removed by `make cluster-down`", file=sys.stderr)
            return 0
        print(f"cluster: {', '.join(cluster.dead_components())} exited:\n{cluster.logs()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ncluster: stopping", file=sys.stderr)
        return 0
    finally:
        cluster.stop()


def down(purge: bool) -> int:
    """Remove every trace of a cluster from this host."""
    before = find_leftovers()
    if not before and not purge:
        print("cluster-down: nothing of a cluster on this host")
        return 0
    print(f"cluster-down: removing {before.summary()}")
    if RUN_DIR.exists():
        DOWN_REQUESTED.touch()  # tells a running `up` that its components die on purpose
    left = clean(purge=purge)
    KUBECONFIG.unlink(missing_ok=True)
    GATEWAY_FILE.unlink(missing_ok=True)
    if left:
        print(f"cluster-down: could not remove {left.summary()}", file=sys.stderr)
        return 1
    print("cluster-down: clean")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="up", choices=("up", "down", "status"))
    parser.add_argument("--purge", action="store_true", help="with down: also remove the nodes' image stores")
    parser.add_argument("--no-app-images", action="store_true",
                        help="with up: skip building and loading the operator and Triton images (and the stack)")
    parser.add_argument("--no-stack", action="store_true",
                        help="with up: nodes only, without Knative Serving, the networking layer and the operator")
    args = parser.parse_args(argv)
    if args.command == "down":
        return down(args.purge)
    if args.command == "status":
        print(f"cluster: {find_leftovers().summary()} on this host")
        return 0
    return up(app_images=not args.no_app_images, stack=not args.no_stack)


if __name__ == "__main__":
    sys.exit(main())
