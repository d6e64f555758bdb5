"""`python -m aifunction_operator.handler`: the function's serving container (settings from env)."""

from __future__ import annotations

import logging
import sys

from .errors import HandlerLoadError
from .settings import HandlerSettings


def main() -> int:
    """Serve the function; exit 2 with a clear message when its settings or code are unusable."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = HandlerSettings.from_env()
    except ValueError as exc:
        print(f"aifn handler: {exc}", file=sys.stderr)
        return 2
    from .kserve_server import serve  # imports kserve, which reads sys.argv

    try:
        serve(settings)
    except HandlerLoadError as exc:
        print(f"aifn handler: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
