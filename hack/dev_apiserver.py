"""`make dev-apiserver`: a real control plane in the foreground, with our CRDs and Knative's installed.

Runs etcd, kube-apiserver (RBAC) and kube-controller-manager from bin/ (built by `make tools`),
writes the admin kubeconfig to .aifn/dev/kubeconfig and serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.controlplane import ControlPlane, MissingBinaries  # noqa: E402

DEV_DIR = ROOT / ".aifn" / "dev"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Start the control plane, print how to use it, and wait until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, default=DEV_DIR / "kubeconfig",
                        help="where to write the admin kubeconfig (default: .aifn/dev/kubeconfig)")
    args = parser.parse_args(argv)

    workdir = DEV_DIR / "data"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        plane = ControlPlane(workdir=workdir)
    except MissingBinaries as missing:
        print(f"dev-apiserver: {missing}", file=sys.stderr)
        return 1

    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background
    try:
        with plane:
            args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(plane.kubeconfig, args.kubeconfig)
            args.kubeconfig.chmod(0o600)
            print(f"control plane ready in {plane.startup_seconds:.1f}s at {plane.server}")
            print(f"CRDs installed: {', '.join(p.name for p in plane.crd_paths)}")
            print(f"component logs: {workdir / 'logs'}")
            print("use it with:\n")
            print(f"export KUBECONFIG={args.kubeconfig.resolve()}\n", flush=True)
            print("Ctrl-C stops it.", flush=True)
            while all(c.exit_code() is None for c in plane.components.values()):
                time.sleep(1)
            dead = [name for name, c in plane.components.items() if c.exit_code() is not None]
            print(f"dev-apiserver: {', '.join(dead)} exited:\n{plane.logs()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("\nstopping", file=sys.stderr)
        return 0
    except (RuntimeError, TimeoutError) as failed:
        print(f"dev-apiserver: {failed}", file=sys.stderr)
        return 1
    finally:
        args.kubeconfig.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
