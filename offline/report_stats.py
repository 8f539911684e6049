"""The numbers behind a report: results rows as points, curves, Pareto frontiers, matched-accuracy savings.

Pure Python (no plotting, no I/O beyond reading the results CSV and the episodes Parquet), so every
number the HTML shows can be checked on its own. A *point* is one results.csv row; a *series* is
what the report draws as one line: a controller with the same parameters across β, or a
controller without β across its parameter variants (e.g. sc at several n).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ReportError

__all__ = ["REQUIRED_COLUMNS", "Point", "ReportError", "add_confidence", "matched_tokens", "mean_points",
           "pareto", "read_points", "savings_vs_sc", "series_of"]

REQUIRED_COLUMNS = ("controller", "beta", "params", "model", "dataset", "accuracy_pct", "avg_tokens", "spec")
MEAN = ("all", "mean")  # the (model, dataset) of points averaged over every cell


@dataclass
class Point:
    controller: str
    beta: float | None
    params: str
    spec: str
    model: str
    dataset: str
    accuracy: float  # percent
    tokens: float  # mean tokens per episode
    row: dict[str, str] = field(default_factory=dict)
    ci: float | None = None  # half-width of a 95% interval over seeds, percent

    @property
    def cell(self) -> tuple[str, str]:
        return self.model, self.dataset

    @property
    def config(self) -> tuple[str, float | None, str]:
        return self.controller, self.beta, self.params

    @property
    def series(self) -> tuple[str, str]:
        """Points of one series form one line: β sweeps share params; fixed baselines share a name."""
        return (self.controller, self.params) if self.beta is not None else (self.controller, "")

    @property
    def label(self) -> str:
        beta = f" β={self.beta:g}" if self.beta is not None else ""
        return f"{self.controller}{beta}" + (f" ({self.params})" if self.params else "")


def read_points(path: str | Path) -> list[Point]:
    """Rows of a results.csv with an accuracy (rows of unlabelled stores are skipped)."""
    path = Path(path)
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ReportError(f"{path}: missing column '{missing[0]}' (expected a results.csv "
                                  "written by autotts eval)")
            rows = list(reader)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read results table: {exc.strerror or exc}") from exc
    points = []
    for line, row in enumerate(rows, start=2):
        if row["accuracy_pct"] in ("", None):
            continue
        try:
            beta = float(row["beta"]) if row["beta"] else None
            accuracy, tokens = float(row["accuracy_pct"]), float(row["avg_tokens"])
        except ValueError as exc:
            raise ReportError(f"{path}:{line}: not a number in beta/accuracy_pct/avg_tokens: {exc}") from exc
        if not (0 <= accuracy <= 100 and tokens > 0 and math.isfinite(tokens)):
            raise ReportError(f"{path}:{line}: accuracy_pct must be in [0, 100] and avg_tokens > 0, "
                              f"got {accuracy} and {tokens}")
        points.append(Point(row["controller"], beta, row["params"], row["spec"], row["model"], row["dataset"],
                            accuracy, tokens, row))
    if not points:
        raise ReportError(f"{path}: no rows with an accuracy to report")
    return points


def series_of(points: list[Point]) -> dict[tuple[str, str], list[Point]]:
    """Points grouped into series, each sorted by β (then tokens), in order of first appearance."""
    groups: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        groups[p.series].append(p)
    return {k: sorted(v, key=lambda p: (p.beta if p.beta is not None else 0.0, p.tokens))
            for k, v in groups.items()}


def pareto(points: list[Point]) -> list[Point]:
    """Points no other point beats on both accuracy (higher) and tokens (lower), cheapest first."""
    frontier: list[Point] = []
    for p in sorted(points, key=lambda p: (p.tokens, -p.accuracy)):
        if not frontier or p.accuracy > frontier[-1].accuracy:
            frontier.append(p)
    return frontier


def matched_tokens(curve: list[tuple[float, float]], target: float) -> float | None:
    """Fewest tokens at which a curve of (tokens, accuracy) points reaches `target` accuracy.

    Walking the points from the cheapest, the first one at or above `target` is the answer, unless a
    cheaper point lies below `target`: then the segment between the two is interpolated linearly in
    log(tokens). None when no point reaches `target`.

    >>> round(matched_tokens([(100, 10.0), (1000, 30.0)], 20.0), 1)  # halfway in log10: 10**2.5
    316.2
    >>> matched_tokens([(100, 10.0)], 20.0) is None
    True
    """
    pts = sorted(curve)
    for i, (tokens, acc) in enumerate(pts):
        if acc >= target:
            if i == 0:
                return tokens
            t0, a0 = pts[i - 1]
            if a0 >= target or acc == a0:
                return tokens
            frac = (target - a0) / (acc - a0)
            return math.exp(math.log(t0) + frac * (math.log(tokens) - math.log(t0)))
    return None


@dataclass
class Saving:
    series: tuple[str, str]
    cell: tuple[str, str]
    sc: Point
    tokens: float | None  # tokens at sc's accuracy along the series; None when never reached
    best: Point  # the series' most accurate point (for "not reached")

    @property
    def saved_pct(self) -> float | None:
        return None if self.tokens is None else 100.0 * (1.0 - self.tokens / self.sc.tokens)


def savings_vs_sc(points: list[Point]) -> list[Saving]:
    """For every cell with an sc row and every other series there: tokens saved at sc's accuracy.

    The sc reference of a cell is its most expensive sc row (the full self-consistency budget).
    """
    out = []
    by_cell: dict[tuple[str, str], list[Point]] = defaultdict(list)
    for p in points:
        by_cell[p.cell].append(p)
    for cell, members in by_cell.items():
        refs = [p for p in members if p.controller == "sc"]
        if not refs:
            continue
        sc = max(refs, key=lambda p: p.tokens)
        for key, curve in series_of(members).items():
            if key[0] == "sc":
                continue
            tokens = matched_tokens([(p.tokens, p.accuracy) for p in curve], sc.accuracy)
            out.append(Saving(key, cell, sc, tokens, max(curve, key=lambda p: (p.accuracy, -p.tokens))))
    return out


def mean_points(points: list[Point]) -> list[Point]:
    """One point per configuration present in every cell: accuracy and tokens averaged over the cells."""
    cells = {p.cell for p in points}
    by_config: dict[tuple, list[Point]] = defaultdict(list)
    for p in points:
        by_config[p.config].append(p)
    out = []
    for members in by_config.values():
        if {p.cell for p in members} != cells or len(members) != len(cells):
            continue
        first = members[0]
        out.append(Point(first.controller, first.beta, first.params, first.spec, *MEAN,
                         sum(p.accuracy for p in members) / len(members),
                         sum(p.tokens for p in members) / len(members)))
    return out


def add_confidence(points: list[Point], episodes_path: str | Path) -> None:
    """Set each point's 95% half-width (1.96 standard errors of the per-seed accuracy) from episodes."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(episodes_path, columns=["spec", "model", "dataset", "seed", "correct"])
    except (OSError, KeyError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) for bad files
        raise ReportError(f"{episodes_path}: cannot read episodes Parquet: {exc}") from exc
    per_seed: dict[tuple, dict[int, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    cols = [table[c].to_pylist() for c in ("spec", "model", "dataset", "seed", "correct")]
    for spec, model, dataset, seed, correct in zip(*cols, strict=True):
        if correct is not None:
            tally = per_seed[(spec, model, dataset)][seed]
            tally[0] += bool(correct)
            tally[1] += 1
    for p in points:
        seeds = per_seed.get((p.spec, p.model, p.dataset))
        if not seeds or len(seeds) < 2:
            continue
        accs = [100.0 * c / n for c, n in seeds.values()]
        mean = sum(accs) / len(accs)
        var = sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)
        p.ci = 1.96 * math.sqrt(var / len(accs))
