"""`autotts controllers`: list the built-in controllers with their parameters and β range."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("controllers", help="list built-in controllers and their parameters",
                       description="List the built-in controllers, their parameters and β ranges.")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.controllers.builtins import BUILTINS

    for name, cls in sorted(BUILTINS.items()):
        beta = "" if cls.beta_range is None else f"  beta in [{cls.beta_range[0]:g}, {cls.beta_range[1]:g}], " \
                                                   f"default {cls.default_beta:g}"
        print(f"{name}: {cls.description}{beta}")
        for key, param in cls.parameters.items():
            print(f"    {key + '=' + repr(param.default):<18} {param.type.__name__:<6} {param.help}")
    return 0
