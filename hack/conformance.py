#!/usr/bin/env python3
"""Runs Knative's ingress conformance suite against the running local cluster (docs/conformance.md).

1. checks the binaries (bin/conformance/, from `bash hack/build-conformance.sh`), the cluster
   (`sudo make cluster`) and its KIngress CRD;
2. builds the six test images (cached OCI archives) and imports them into both nodes' containerd
   (only where a node lacks that digest; needs root, like the cluster);
3. creates the namespace `serving-tests` when missing;
4. runs bin/conformance/ingress.test with --ingressClass, --ingressendpoint (the CPU worker's address),
   --dockerrepo/--tag of the images and --skip-tests (support.cluster.conformance.SKIPPED plus --skip),
   its output streamed here (with --verbose) and kept in .aifn/conformance/ingress-<time>.log;
5. prints one line per subtest of the suite (PASS / FAIL / SKIP with the reason) and a summary.

Exit 0 when no subtest failed, 1 when any failed (or hung), 2 when the cluster, the binaries or the
networking layer's CRD are missing (the message says what to run).

Usage: .venv/bin/python hack/conformance.py [--kubeconfig .aifn/cluster/kubeconfig] [--run REGEX]
       [--skip a,b] [--parallel N] [--timeout SECONDS] [--verbose]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster import conformance  # noqa: E402
from support.cluster.layout import KUBECONFIG  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", type=Path, default=KUBECONFIG,
                        help=f"the cluster's kubeconfig (default: {KUBECONFIG.relative_to(ROOT)})")
    parser.add_argument("--run", metavar="REGEX",
                        help="only the subtests matching REGEX (go's -test.run below TestIngressConformance: "
                             "each `/` starts the next level, so `basics` runs basics and basics/http2, "
                             "`basics$/^$` only basics)")
    parser.add_argument("--skip", default="", metavar="A,B",
                        help="subtests to skip besides the ones the project skips (--skip-tests)")
    parser.add_argument("--ingress-class", default=conformance.INGRESS_CLASS)
    parser.add_argument("--ingress-endpoint", default=conformance.INGRESS_ENDPOINT,
                        help="the address where the gateway Service's nodePorts answer (default: %(default)s)")
    parser.add_argument("--parallel", type=int, default=conformance.SuiteOptions.parallel,
                        help="subtests run at once (-test.parallel; default %(default)s)")
    parser.add_argument("--timeout", type=float, default=conformance.SuiteOptions.timeout,
                        help="seconds for the whole run (default %(default).0f)")
    parser.add_argument("--verbose", "-v", action="store_true", help="stream the suite's output")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    skip = tuple(name.strip() for name in args.skip.split(",") if name.strip())
    options = conformance.SuiteOptions(
        kubeconfig=args.kubeconfig.resolve(), run=args.run, skip=skip, ingress_class=args.ingress_class,
        ingress_endpoint=args.ingress_endpoint, parallel=args.parallel, timeout=args.timeout)
    try:
        conformance.skip_list(options)  # unknown names refused before anything runs
    except ValueError as error:
        print(f"conformance: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        conformance.preflight(options.kubeconfig)
        archives = conformance.build_images()
        imported = conformance.import_images(archives)
        print(f"conformance: test images ready in {time.monotonic() - started:.1f} s"
              + (f" (imported {len(imported)})" if imported else " (already in both nodes)"), flush=True)
        conformance.ensure_namespace(options.kubeconfig)
    except conformance.SetupMissing as missing:
        print(f"conformance: {missing}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a setup step failed: say which, exit 2
        print(f"conformance: setting up failed: {error}", file=sys.stderr)
        return 2
    argv_, _ = conformance.suite_command(options)
    print("conformance: " + " ".join(argv_), flush=True)
    run = conformance.run_suite(options, echo=print if args.verbose else None)
    print(conformance.format_table(run.rows))
    found = conformance.problems(run.rows, run.output, (), run.returncode)
    summary = run.summary()
    print(f"conformance: {summary.line()} ({options.ingress_class}; whole run with images "
          f"{time.monotonic() - started:.0f} s); output: {run.log_file}")
    if found:
        print("conformance: FAILED:\n  " + "\n  ".join(found), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
