"""`autotts`: the one command. Each subcommand lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys

from autotts.controllers.errors import AutoTTSError

from . import (
    ab_cmd,
    collect_cmd,
    controllers_cmd,
    discover_cmd,
    eval_cmd,
    import_cmd,
    report_cmd,
    sandbox_cmd,
    serve_cmd,
    tiny_model_cmd,
)

COMMANDS = (eval_cmd, import_cmd, controllers_cmd, report_cmd, discover_cmd, serve_cmd, tiny_model_cmd, ab_cmd,
            collect_cmd, sandbox_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autotts",
        description="Test-time scaling controllers: replay, evaluate, discover and serve them.",
        epilog="Run 'autotts COMMAND --help' for the options of a command.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except AutoTTSError as exc:
        print(f"autotts: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("autotts: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
