"""`autotts sandbox`: does the kernel sandbox for model-written controllers work on this machine?"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sandbox", help="check the sandbox that model-written controller code runs in",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start one sandboxed worker and report which isolation layers are active (bubblewrap "
                    "namespaces, seccomp, /tmp size cap) or, when the sandbox cannot work here, what is "
                    "missing. autotts eval, discover and serve refuse to run artifact or candidate code without "
                    "it, unless --no-sandbox is given (docs/security.md).",
        epilog="examples:\n  autotts sandbox\n  autotts sandbox --json")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from autotts.sandbox import sandbox_status

    status = sandbox_status(refresh=True)
    print(json.dumps(asdict(status), indent=2) if args.json else status.describe())
    return 0 if status.available else 1
