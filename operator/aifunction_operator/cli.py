"""`aifn`: the command line. Each subcommand lives in `commands/` and registers itself here."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

# Subcommand modules, each with `register(subparsers)`; imported lazily so that `aifn render`
# does not pay for the local runtime's or the operator's imports.
COMMANDS = {
    "render": "aifunction_operator.commands.render",
    "validate": "aifunction_operator.commands.render",
    "crd": "aifunction_operator.commands.render",
    "operator": "aifunction_operator.commands.operator",
    "run": "aifunction_operator.commands.run",
    "invoke": "aifunction_operator.commands.invoke",
    "deploy": "aifunction_operator.commands.deploy",
    "delete": "aifunction_operator.commands.delete",
}
DISTRIBUTION = "aifunction-operator"


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; only `selected`'s module is imported when one is named."""
    parser = argparse.ArgumentParser(prog="aifn", description="Serverless AI functions on Kubernetes (Knative + Triton), and on one machine.")
    parser.add_argument("--version", action="version", version=f"aifn {version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = {COMMANDS[selected]} if selected in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(module).register(subparsers)
    return parser


def version() -> str:
    """The installed package's version."""
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `aifn` console script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = build_parser(selected)
    args = parser.parse_args(args_list)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.command(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
