"""A recipe → the source of one plain `GeneratorController` module, as a person would write it.

The module has one class: its docstring lists the mechanisms, `schedule(beta)` sets every knob the
blocks read (grouped and commented by mechanism, each a linear function of β), `run` is the episode
loop every recipe shares (vote → prune → decode → vote again → stop → widen), and every block adds
one method whose docstring names it. Nothing but `autotts.controllers` and `collections` is imported.
"""

from __future__ import annotations

import re
import textwrap

from .knobs import CORE_KNOBS, KNOBS
from .recipe import Recipe

__all__ = ["class_name", "render"]

_SDK = ("Branch", "Continue", "GeneratorController", "Param", "Prune", "beta_confidence", "majority", "top_two")


def _expr(name: str, lo: float, hi: float) -> str:
    if hi == lo:
        return f"{lo}"
    slope = hi - lo if KNOBS[name].kind is int else round(hi - lo, 4)
    line = f"{lo} {'-' if slope < 0 else '+'} {abs(slope)} * beta"
    return f"round({line})" if KNOBS[name].kind is int else f"round({line}, 4)"


def _wrapped(head: str, items: list[str], indent: str, width: int = 110) -> list[str]:
    """`head(item, item, ...)` over as many lines as it takes."""
    lines, line = [], head + "("
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else "")
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = indent + " " * (len(head) + 1 - len(indent))
        line += piece
    return [*lines, line + ")"]


def _schedule(recipe: Recipe) -> list[str]:
    lines, done = [], set()
    groups = [("core: opening, width and warm-up", list(CORE_KNOBS))]
    groups += [(f"{b.title} ({b.origin})", list(b.knobs)) for b in recipe.block_list()]
    for title, names in groups:
        names = [n for n in names if n not in done]
        if not names:
            continue
        lines.append(f"            # {title}")
        for name in names:
            done.add(name)
            lines.append(f'            "{name}": {_expr(name, *recipe.ends[name])},  # {KNOBS[name].help}')
    return lines


def _run(recipe: Recipe) -> str:
    blocks = recipe.block_list()
    state = {key: value for b in blocks for key, value in b.state}
    if recipe.blocks["prune"] or any('st["dropped"]' in b.code for b in blocks):
        state["dropped"] = "[]"  # the branches abandoned this step
    init = ", ".join(f'"{key}": {value}' for key, value in state.items())
    lines = ['    def run(self, obs):',
             '        """One episode: open a first set of branches, then step by step vote, abandon, decode,',
             '        vote again, answer when a stop rule says so, otherwise widen."""',
             '        k = self.knobs',
             f'        st = {{{init}}}  # this episode\'s state',
             '        first = k["n_init"]',
             '        if obs.branches_available is not None:',
             '            first = min(first, obs.branches_available)',
             '        if first:',
             '            yield [Branch(first)]',
             '        for step in range(self.params["max_steps"]):',
             '            winner, conf, votes = self.vote(obs)',
             '            self.smooth(st, conf, again=False)',
             '            alive = obs.running()']
    prunes = [b.method for b in blocks if b.slot == "prune"]
    if prunes:
        lines += ['            st["dropped"] = []',
                  f'            for prune in ({", ".join(f"self.{m}" for m in prunes)},):',
                  '                drop = prune(obs, st, step, winner, alive)',
                  '                st["dropped"] += drop',
                  '                alive = [b for b in alive if b.id not in drop]']
    lines += ['            alive.sort(key=lambda b: -len(b.answers))  # the most-probed branches first',
              '            plan = [(b, self.segments(st, step, winner, b)) for b in alive]',
              '            if not any(n for _, n in plan):  # nobody may wait for ever',
              '                plan = [(b, 1) for b in alive]',
              '            batch = [Continue(b.id, segments=n) for b, n in plan if n]',
              *(['            batch = [Prune(i) for i in st["dropped"]] + batch'] if prunes else []),
              '            if batch:',
              '                yield batch',
              '            winner, conf, votes = self.vote(obs)',
              '            level, trend = self.smooth(st, conf, again=True)']
    stops = [f"self.{b.method}(obs, st, step, winner, votes, level, trend)" for b in blocks if b.slot == "stop"]
    if len(stops) == 1:
        lines.append(f'            if winner is not None and {stops[0]}:')
    else:
        lines.append('            if winner is not None and any(stop(obs, st, step, winner, votes, level, trend)')
        names = ", ".join(s.split("(")[0] for s in stops)
        lines.append(f'                                         for stop in ({names})):')
    lines += ['                return winner',
              '            if not obs.running():',
              '                break',
              '            room = k["max_branches"] - len(obs.branches)',
              '            if obs.branches_available is not None:',
              '                room = min(room, obs.branches_available)',
              '            n = min(self.widen(obs, st, step, level, trend), room)']
    if recipe.blocks["pace"]:
        lines.append('            n = self.pace(obs, st, n)')
    lines += ['            if n > 0:',
              '                yield [Branch(n)]',
              '        return self.final(obs)']
    return "\n".join(lines)


_FINAL = '''
    def final(self, obs):
        """Out of steps or branches: the majority of the finished answers, else of the latest ones."""
        pool = obs.completed_answers()
        return majority(pool) if pool else majority([b.latest for b in obs.branches if not b.pruned])
'''


def _description(text: str) -> str:
    if len(text) <= 96:
        return f'    description = "{text}"'
    cut = text.rfind(", ", 0, 96) + 2
    return f'    description = ("{text[:cut]}"\n                   "{text[cut:]}")'


def class_name(recipe: Recipe) -> str:
    """A CamelCase class name from the recipe's most distinctive blocks."""
    words = [w for b in recipe.block_list() if b.origin == "new" for w in b.name.split("_")[:1]]
    return "".join(w.capitalize() for w in [*words[:3], "composed"])


def render(recipe: Recipe, *, name: str | None = None, note: str = "") -> str:
    """Controller source for `recipe` (a module with one GeneratorController subclass)."""
    blocks = recipe.block_list()
    key = recipe.key()
    name = name or f"composed_{key}"
    listing = "\n".join(f"* {b.slot}: {b.title} ({b.origin})" for b in blocks)
    budget = _wrapped("    budget_knobs = ", [f'"{k}"' for k in recipe.knobs() if KNOBS[k].spend > 0], "    ")
    methods = "".join("\n" + b.code.strip("\n") + "\n" for b in blocks)
    said = textwrap.wrap((note or "Composed by the autotts local explorer.").replace("\\", "/").replace('"', "'"),
                         100, subsequent_indent="    ")
    body = (f'class {class_name(recipe)}(GeneratorController):\n'
            f'    """{chr(10).join(said)}\n\n'
            f'    Mechanisms (recipe {key}):\n\n'
            + "\n".join("    " + line for line in listing.splitlines()) + '\n\n'
            '    Every knob is a linear function of beta, monotone by construction: the budget knobs never\n'
            '    decrease as beta grows, so a larger beta never shrinks the token envelope.\n    """\n\n'
            f'    name = "{name}"\n'
            '    version = "1"\n'
            + _description(", ".join(b.title for b in blocks)) + "\n"
            '    parameters = {"max_steps": Param(int, 500, low=1, help="hard cap on rounds")}\n'
            '    beta_range = (0.0, 1.0)\n'
            '    default_beta = 0.5\n'
            + "\n".join(budget) + "\n\n"
            '    @classmethod\n'
            '    def schedule(cls, beta):\n'
            '        return {\n' + "\n".join(_schedule(recipe)) + '\n        }\n\n'
            + _run(recipe) + "\n" + methods + _FINAL)
    sdk = [n for n in _SDK if re.search(rf"\b{n}\b", body)]
    head = '"""' + "\n".join(textwrap.wrap(f'{name}: {", ".join(b.title for b in blocks)}.', 104)) + '"""\n\n'
    if "deque(" in body:
        head += "from collections import deque\n\n"
    return head + f"from autotts.controllers import {', '.join(sdk)}\n\n\n" + body
