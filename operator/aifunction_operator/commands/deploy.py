"""`aifn deploy -f FILE`: validate locally, apply to the cluster, and follow each function to Ready.

Like `serverless deploy` and `kn service create --wait`: a line whenever a stage of the deployment
changes (commands/progress.py), then the URL and the `aifn invoke` line that calls it; exit 1 with
the function's reason and last events when it fails or `--timeout` passes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..constants import GROUP
from ..spec import AIFunction, InvalidSpec, parse_function
from .arguments import duration
from .cluster import Cluster, ClusterError, add_connection_flags
from .inputs import InputError, read_documents
from .progress import Pod, Verdict, describe_events, related_events, steps, timeout_verdict, verdict

EXIT_FAILED = 1
EXIT_INVALID = 2
POLL_SECONDS = 1.0
# How long a failure Knative reports (not the operator) must last, with no pod starting, to be believed.
FAILURE_WINDOW_SECONDS = 20.0


def register(subparsers: Any) -> None:
    """Add `deploy`."""
    p = subparsers.add_parser("deploy", help="apply functions to the cluster and follow them to Ready",
                              description="Validate FILE as `aifn validate` does, server-side apply it (field manager aifn-cli) "
                              "and follow each function to Ready; exit 1 naming the reason when one fails or --timeout passes.")
    p.add_argument("-f", "--filename", required=True, help="AIFunction YAML file, '-' for stdin")
    add_connection_flags(p)
    p.add_argument("--timeout", type=duration, default="10m", help="how long to wait for Ready: 90s, 10m, 1h30m or seconds (default 10m)")
    p.add_argument("--no-wait", dest="wait", action="store_false", help="apply and return without following the functions")
    p.add_argument("--force-conflicts", action="store_true", help="take over fields another field manager owns (as kubectl apply --server-side)")
    p.add_argument("--gateway", metavar="URL", help="where this machine reaches the cluster's ingress; the printed `aifn invoke` line goes through it")
    p.set_defaults(command=run)


@dataclass
class Deployment:
    """One function being followed: what was printed for each stage, and how it ended."""

    namespace: str
    name: str
    model: str
    printed: dict[str, str] = field(default_factory=dict)
    last: dict[str, Any] | None = None
    pods: list[Pod] = field(default_factory=list)  # of its latest revision, as last read
    outcome: Verdict | None = None
    failing_since: float | None = None  # when an unsettled failure was first seen, in follow()'s seconds


def run(args: argparse.Namespace) -> int:
    try:
        documents = validated(args.filename)
    except InputError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    try:
        cluster = Cluster.connect(args)
        deployments = [apply(cluster, args, fn, body) for fn, body in documents]
    except ClusterError as exc:
        print(f"aifn deploy: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not args.wait:
        return 0
    follow(cluster, deployments, args.timeout)
    return report(cluster, deployments, args.gateway, args.timeout)


def validated(path: str) -> list[tuple[AIFunction, dict[str, Any]]]:
    """Each function with the document it came from; InputError naming every bad field, as `aifn validate`
    and `aifn render` report them (a local model path, for one, is refused here, not by the operator)."""
    from ..render import render_function  # noqa: PLC0415
    from ..render.config import OperatorConfig  # noqa: PLC0415

    config = OperatorConfig.from_env()
    found: list[tuple[AIFunction, dict[str, Any]]] = []
    problems: list[str] = []
    for doc in read_documents(path):
        try:
            fn = parse_function(doc.body)
            render_function(fn, config)
            found.append((fn, doc.body))
        except InvalidSpec as exc:
            problems += [f"{doc.source}: {error}" for error in exc.errors]
    if problems:
        raise InputError("\n".join(problems))
    return found


def apply(cluster: Cluster, args: argparse.Namespace, fn: AIFunction, body: dict[str, Any]) -> Deployment:
    """Server-side apply one function; prints whether it was created, configured or unchanged."""
    namespace = cluster.namespace_for(args, (body.get("metadata") or {}).get("namespace"))
    manifest = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    before = cluster.get_function(namespace, fn.name)
    after = cluster.apply_function(manifest, force=args.force_conflicts)
    if before is None:
        change = "created"
    else:
        change = "configured" if after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"] else "unchanged"
    print(f"aifunction.{GROUP}/{fn.name} {change} in namespace {namespace} (generation {after['metadata'].get('generation')})", flush=True)
    return Deployment(namespace, fn.name, fn.spec.model.name)


def follow(cluster: Cluster, deployments: list[Deployment], timeout: float) -> None:
    """Poll each function until it is Ready or failed, or `timeout` seconds pass; print each change of a stage."""
    started = time.monotonic()
    while True:
        for item in deployments:
            if item.outcome is None:
                _poll(cluster, item, time.monotonic() - started)
        if all(item.outcome for item in deployments) or time.monotonic() - started >= timeout:
            return
        time.sleep(POLL_SECONDS)


def _poll(cluster: Cluster, item: Deployment, elapsed: float) -> None:
    try:
        item.last = cluster.get_function(item.namespace, item.name)
    except ClusterError as exc:
        _say(item, "api", f"cannot read the function: {exc}", elapsed)
        return
    if item.last is None:
        item.outcome = Verdict(False, "NotFound", "the AIFunction was deleted")
        return
    revision = ((item.last.get("status") or {}).get("rollout") or {}).get("latestRevision")
    item.pods = [Pod.from_manifest(p) for p in cluster.revision_pods(item.namespace, revision)] if revision else []
    for step in steps(item.last, item.pods):
        _say(item, step.key, step.text, elapsed)
    result = verdict(item.last, item.pods)
    if result is None or result.settled:
        item.failing_since = None
        item.outcome = result
        return
    item.failing_since = elapsed if item.failing_since is None else item.failing_since
    if elapsed - item.failing_since >= FAILURE_WINDOW_SECONDS:
        item.outcome = result


def _say(item: Deployment, key: str, text: str, elapsed: float) -> None:
    if item.printed.get(key) != text:
        item.printed[key] = text
        print(f"[{elapsed:4.0f}s] {item.name}: {text}", flush=True)


def report(cluster: Cluster, deployments: list[Deployment], gateway: str | None, timeout: float) -> int:
    """The URL and invoke line of each Ready function; the reason and last events of each other one."""
    code = 0
    for item in deployments:
        if item.outcome is not None and item.outcome.ok:
            url = ((item.last or {}).get("status") or {}).get("url")
            print(f"{item.name} is Ready\n  URL:    {url or '(none reported)'}")
            if url:
                print(f"  Invoke: {invoke_line(url, item.model, gateway)}\n          (NAME: an input of the model; VALUE: a JSON array, @file.json or file.npy)")
            continue
        code = EXIT_FAILED
        outcome = item.outcome or timeout_verdict(item.last, item.pods)
        when = "failed" if item.outcome else f"is not Ready after --timeout {timeout:g}s"
        detail = f": {outcome.message}" if outcome.message else ""
        print(f"error: {item.namespace}/{item.name} {when}: {outcome.reason}{detail}", file=sys.stderr)
        since = ((item.last or {}).get("metadata") or {}).get("creationTimestamp")
        events = related_events(cluster.events(item.namespace), item.name, since)
        print(describe_events(events, datetime.now(UTC)), file=sys.stderr)
    return code


def invoke_line(url: str, model: str, gateway: str | None) -> str:
    """The `aifn invoke` command that sends a request to the function (NAME=VALUE to fill in)."""
    via = f" --gateway {gateway}" if gateway else ""
    return f"aifn invoke {url}{via} --model {model} --input NAME=VALUE"
