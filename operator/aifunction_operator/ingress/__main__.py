"""`python -m aifunction_operator.ingress init|run`: the gateway pod's init step and controller.

init: write Envoy's bootstrap and empty xDS files into the shared directory (an emptyDir);
run:  the controller (KIngresses and Services in, xDS files and KIngress status out).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from . import envoy, kingress
from .controller import Controller, Settings, load_kubernetes_config, write_empty


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aifunction_operator.ingress", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("init", "run"))
    parser.add_argument("--xds-dir", type=Path, default=Path("/xds"), help="directory shared with Envoy")
    parser.add_argument("--public-service", default="aifn-gateway.aifn-ingress.svc.cluster.local",
                        help="cluster DNS name of the external gateway Service")
    parser.add_argument("--private-service", default="aifn-gateway-internal.aifn-ingress.svc.cluster.local",
                        help="cluster DNS name of the cluster-local gateway Service")
    parser.add_argument("--ingress-class", default=kingress.INGRESS_CLASS, help="the KIngress class served")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "init":
        args.xds_dir.mkdir(parents=True, exist_ok=True)
        (args.xds_dir / "bootstrap.json").write_text(json.dumps(envoy.bootstrap(str(args.xds_dir)), indent=1))
        write_empty(args.xds_dir)
        print(f"wrote Envoy's bootstrap and empty xDS files in {args.xds_dir}")
        return 0
    # PID 1 in its container: without a handler SIGTERM would be ignored until the kubelet kills it.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    load_kubernetes_config()
    Controller(Settings(args.xds_dir, args.public_service, args.private_service, args.ingress_class)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
