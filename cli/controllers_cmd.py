"""`autotts controllers`: list the built-in controllers with their parameters and β range."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controllers", help="list built-in controllers and their parameters",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="List the built-in controllers, their parameters and β ranges; --export writes "
                                   "one as a controller artifact to start your own from.",
                       epilog="examples:\n  autotts controllers\n  autotts controllers --export cmc my_cmc/\n"
                              "  autotts eval --controller my_cmc/:beta=0.5 --out r.csv   # runs it sandboxed")
    p.add_argument("--export", nargs=2, metavar=("NAME", "DIR"), help="write built-in NAME as an artifact in DIR")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.controllers.artifact import save_artifact
    from autotts.controllers.builtins import BUILTINS, plain_source
    from autotts.controllers.errors import ControllerSpecError

    if args.export:
        name, directory = args.export
        if name not in BUILTINS:
            raise ControllerSpecError(f"unknown controller {name!r}; available: {', '.join(sorted(BUILTINS))}")
        path = save_artifact(directory, plain_source(name), provenance={"exported_from": name})
        print(f"wrote {path} (built-in {name!r} as a plain artifact)")
        return 0

    for name, cls in sorted(BUILTINS.items()):
        beta = "" if cls.beta_range is None else f"  beta in [{cls.beta_range[0]:g}, {cls.beta_range[1]:g}], " \
                                                   f"default {cls.default_beta:g}"
        print(f"{name}: {cls.description}{beta}")
        for key, param in cls.parameters.items():
            print(f"    {key + '=' + repr(param.default):<18} {param.type.__name__:<6} {param.help}")
    return 0
