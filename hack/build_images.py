"""Build the operator image without Docker or a registry; print its OCI archive's path.

    hack/build_images.py [--rebuild] [--verify]

Builds localhost/aifn/aifunction-operator:dev from the project's Dockerfile with buildah (see
tests/support/cluster/operator_image.py for how: a local Debian Python base, wheels downloaded on
the host) and writes it as an OCI archive to ~/.cache/aifn/images/, the form `ctr images import`
reads. Cached: an unchanged tree prints the existing archive at once. The path is the one line on
stdout; progress goes to stderr. --verify then imports the archive into a throwaway containerd and
runs `aifn operator --help` in it as the image's user with a read-only root file system.
Needs root and Debian's buildah and debootstrap (containerd for --verify).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.cluster.operator_image import BuildError, operator_image_archive, verify_archive  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rebuild", action="store_true", help="build even when a cached archive matches the inputs")
    parser.add_argument("--verify", action="store_true", help="import it into a throwaway containerd and run it once")
    args = parser.parse_args()
    try:
        archive = operator_image_archive(rebuild=args.rebuild)
        if args.verify:
            print(verify_archive(archive).rstrip(), file=sys.stderr)
            print("operator image: imported and ran in a throwaway containerd", file=sys.stderr)
    except BuildError as problem:
        print(f"operator image: {problem}", file=sys.stderr)
        return 1
    print(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
