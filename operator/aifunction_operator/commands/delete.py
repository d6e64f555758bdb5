"""`aifn delete -f FILE` or `aifn delete NAME... -n NS`: delete functions and, with --wait (the default),
return once each is gone together with its Knative Service (foreground deletion)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..constants import GROUP, KIND
from .arguments import duration
from .cluster import Cluster, ClusterError, add_connection_flags
from .inputs import InputError, read_documents

EXIT_FAILED = 1
EXIT_INVALID = 2
POLL_SECONDS = 1.0


def register(subparsers: Any) -> None:
    """Add `delete`."""
    p = subparsers.add_parser("delete", help="delete functions (by file or name) and wait until they are gone")
    p.add_argument("names", nargs="*", metavar="NAME", help="functions to delete (or -f)")
    p.add_argument("-f", "--filename", help="delete the functions in this AIFunction YAML file, '-' for stdin")
    add_connection_flags(p)
    p.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                   help="wait until each function and its Knative Service are gone (default: wait)")
    p.add_argument("--timeout", type=duration, default="5m", help="how long --wait waits: 90s, 5m or seconds (default 5m)")
    p.set_defaults(command=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.names) == bool(args.filename):
        print("aifn delete: name the functions, or give -f FILE (not both)", file=sys.stderr)
        return EXIT_INVALID
    try:
        written = targets(args.filename) if args.filename else [(name, None) for name in args.names]
    except InputError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    code = 0
    try:
        cluster = Cluster.connect(args)
        pending: list[tuple[str, str]] = []
        for name, namespace in written:
            namespace = cluster.namespace_for(args, namespace)
            if cluster.delete_function(namespace, name, foreground=args.wait):
                print(f"aifunction.{GROUP}/{name} deleted from namespace {namespace}", flush=True)
                pending.append((namespace, name))
            else:
                print(f"aifn delete: aifunction.{GROUP}/{name} not found in namespace {namespace}", file=sys.stderr)
                code = EXIT_FAILED
        if args.wait:
            code = max(code, wait_gone(cluster, pending, args.timeout))
    except ClusterError as exc:
        print(f"aifn delete: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return code


def targets(path: str) -> list[tuple[str, str | None]]:
    """(name, namespace or None) of each AIFunction in the file; its spec need not be valid to delete it."""
    found: list[tuple[str, str | None]] = []
    for doc in read_documents(path):
        body = doc.body if isinstance(doc.body, dict) else {}
        meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        if body.get("kind") != KIND or not isinstance(meta.get("name"), str):
            raise InputError(f"{doc.source}: not an {KIND} with a metadata.name")
        namespace = meta.get("namespace")
        found.append((meta["name"], namespace if isinstance(namespace, str) else None))
    return found


def wait_gone(cluster: Cluster, pending: list[tuple[str, str]], timeout: float) -> int:
    """Poll until every function is gone; 1 naming those left when `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        left = [(ns, name) for ns, name in pending if cluster.get_function(ns, name) is not None]
        if not left:
            for namespace, name in pending:
                print(f"{namespace}/{name} is gone, its Knative Service included", flush=True)
            return 0
        if time.monotonic() >= deadline:
            for namespace, name in left:
                print(f"aifn delete: {namespace}/{name} still exists after --timeout (waiting for its Knative Service to go)", file=sys.stderr)
            return EXIT_FAILED
        time.sleep(POLL_SECONDS)

