"""``edge-mcepl`` command line: parses, validates, calls the library — nothing more.

A :class:`~edge_mcepl.errors.UserError` anywhere becomes one line on stderr and exit status 2; so
does a subcommand whose pip extra is not installed (:mod:`edge_mcepl.extras`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import UserError
from .extras import require_extra

# Each subcommand lives in its own module under edge_mcepl/commands with a register(subparsers).
COMMANDS = ("simulate", "models", "download", "export", "infer", "profile", "broker", "join", "lab", "dashboard")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-mcepl", description="MCE-PL personalized mask learning for device labs")
    parser.add_argument("--version", action="version", version=f"edge-mcepl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edge_mcepl.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        require_extra(args.command)
        return args.func(args)
    except UserError as exc:
        print(f"edge-mcepl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("edge-mcepl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
