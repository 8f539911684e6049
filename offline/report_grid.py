"""The branch × depth grid of one traced episode, as in the paper's live demo.

Rows are branches in opening order, columns are decoded segments; a cell is an answer the
controller saw (a probe answer, or the final answer when the branch finished), coloured by whether
it equals the gold answer. The trace says which actions ran and what they revealed but not at
which depth; replaying its actions over the episode's store gives the exact depth of every answer
and the gold answer, so the grid needs the store the episode came from (results.csv names it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotts.controllers.actions import Answer, Branch, Continue, Probe, Prune

from .env import ReplayEnv
from .report_stats import ReportError
from .store import ReplayStore

__all__ = ["Grid", "choose_episodes", "grid_figure", "load_trace", "read_traces", "rebuild"]

_ACTIONS = {cls.__name__: cls for cls in (Branch, Continue, Probe, Prune, Answer)}
COLOURS = {"correct": "#2e9d4f", "incorrect": "#d8453a", "ERR": "#9a9a9a"}


_HEADER_END = ', "trace": '  # write_traces puts the (long) trace last; quotes inside strings are escaped


def read_traces(directory: str | Path) -> list[dict[str, Any]]:
    """The header of every traced episode `autotts eval --traces-out` wrote (traces are loaded on demand).

    Each header holds the line's fields but "trace", plus `_file`, `_line` and `_prunes` (prune actions).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"{directory}: traces directory not found")
    headers = []
    for path in sorted(directory.glob("*.jsonl")):
        for n, text in enumerate(path.read_text().splitlines(), start=1):
            if not text.strip():
                continue
            cut = text.find(_HEADER_END)
            try:
                head = json.loads(text[:cut] + "}") if cut > 0 else json.loads(text)
                _ = head["spec"], head["model"], head["dataset"], int(head["question"]), int(head["seed"])
            except (ValueError, KeyError, TypeError) as exc:
                raise ReportError(f"{path}:{n}: not a trace line written by autotts eval ({exc})") from exc
            head.pop("trace", None)
            headers.append({**head, "_file": str(path), "_line": n, "_prunes": text.count('"type": "Prune"')})
    return headers


def load_trace(header: dict[str, Any]) -> dict[str, Any]:
    """The full trace line a header from `read_traces` stands for."""
    path, n = header["_file"], header["_line"]
    text = Path(path).read_text().splitlines()[n - 1]
    try:
        line = json.loads(text)
        if not isinstance(line["trace"], list):
            raise TypeError("'trace' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}:{n}: not a trace line written by autotts eval ({exc})") from exc
    return line


def _key(line: dict[str, Any]) -> tuple[str, str, int, int]:
    return line["model"], line["dataset"], int(line["question"]), int(line["seed"])


def choose_episodes(headers: list[dict[str, Any]], limit: int, episode: str | None = None) -> list[dict[str, Any]]:
    """Up to `limit` traced episodes of one (model, dataset, question, seed), one per controller spec.

    `episode` ("MODEL/DATASET/QUESTION/SEED") picks it; otherwise the episode traced for the most specs
    wins, then one that some controllers got right and others wrong, then the most right, then one
    with prunes. Controllers that prune come first, then sc, one spec per controller name before the rest.
    """
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for head in headers:
        by_key.setdefault(_key(head), []).append(head)
    if not by_key:
        return []
    if episode is not None:
        parts = episode.rsplit("/", 3)
        try:
            key = (parts[0], parts[1], int(parts[2]), int(parts[3]))
        except (IndexError, ValueError) as exc:
            raise ReportError(f"--grid-episode must be MODEL/DATASET/QUESTION/SEED, got {episode!r}") from exc
        if key not in by_key:
            raise ReportError(f"--grid-episode {episode}: no traced episode with that model, dataset, question "
                              "and seed")
    else:
        def interest(item):
            group = item[1]
            outcomes = [h.get("correct") for h in group]
            return (len({h["spec"] for h in group}), True in outcomes and False in outcomes,
                    outcomes.count(True), any(h["_prunes"] for h in group))
        key = max(by_key.items(), key=interest)[0]  # the first of equals, in file order
    seen: dict[str, dict[str, Any]] = {}
    for head in by_key[key]:
        seen.setdefault(head["spec"], head)
    names: set[str] = set()
    firsts, rest = [], []
    for head in sorted(seen.values(), key=lambda h: (h["_prunes"] == 0, h["controller"] != "sc")):  # else file order
        (rest if head["controller"] in names else firsts).append(head)
        names.add(head["controller"])
    return [load_trace(h) for h in (firsts + rest)[:limit]]


@dataclass
class Grid:
    line: dict[str, Any]
    gold: str | None
    segment_tokens: int
    # per branch (opening order): [(depth, answer, step, final?)]
    cells: list[list[tuple[int, str, int, bool]]] = field(default_factory=list)
    pruned: dict[int, int] = field(default_factory=dict)  # branch -> step it was pruned at
    depth: list[int] = field(default_factory=list)  # segments decoded per branch at the end

    def status(self, answer: str) -> str:
        if answer == "ERR":
            return "ERR"
        return "correct" if answer == self.gold else "incorrect"

    def winners(self) -> set[int]:
        """Unpruned branches whose newest answer is the episode's answer."""
        answer = self.line.get("answer")
        return {b for b, cells in enumerate(self.cells) if cells and b not in self.pruned and cells[-1][1] == answer}


def rebuild(line: dict[str, Any], store: ReplayStore) -> Grid:
    """Re-apply the trace's actions over `store` (one at a time) and read where each answer was revealed."""
    env = ReplayEnv(store)
    obs = env.reset(int(line["question"]), int(line["seed"]), beta=line.get("beta"))
    grid = Grid(line, store.golds[int(line["question"])], store.segment_tokens)
    seen: list[int] = []
    for record in line["trace"]:
        action = record["action"]
        fields = {k: v for k, v in action.items() if k != "type"}
        try:
            env.step([_ACTIONS[action["type"]](**fields)])
        except Exception as exc:  # a trace that does not fit the store: report, don't crash
            raise ReportError(f"trace of {line['spec']} ({line['model']}/{line['dataset']} question "
                              f"{line['question']} seed {line['seed']}) does not replay on {store.path}: "
                              f"{exc}") from exc
        if action["type"] == "Prune":
            grid.pruned[action["branch"]] = record["step"]
        for view in obs.branches:
            if view.id == len(seen):
                seen.append(0)
                grid.cells.append([])
            for k in range(seen[view.id], len(view.answers)):
                final = view.finished and k == len(view.answers) - 1
                grid.cells[view.id].append((view.depths[k], view.answers[k], record["step"], final))
            seen[view.id] = len(view.answers)
    grid.depth = [view.depth for view in obs.branches]
    return grid


def grid_figure(grid: Grid, name: Callable[[int], str] = lambda b: f"b{b}"):
    """A plotly figure: heatmap of revealed answers; markers for final answers, prunes and winners."""
    import plotly.graph_objects as go

    n_rows, n_cols = len(grid.cells), max([1, *grid.depth])
    codes = {"incorrect": 0, "correct": 1, "ERR": 2}
    z: list[list[float | None]] = [[None] * n_cols for _ in range(n_rows)]
    text = [[""] * n_cols for _ in range(n_rows)]
    hover = [[""] * n_cols for _ in range(n_rows)]
    finals_x, finals_y = [], []
    for b, cells in enumerate(grid.cells):
        for depth, answer, step, final in cells:
            col = max(depth, 1) - 1
            status = grid.status(answer)
            z[b][col] = codes[status]
            text[b][col] = answer if len(answer) <= 5 else answer[:4] + "…"
            kind = "final answer" if final else "probe"
            hover[b][col] = f"{name(b)}, segment {depth}, step {step}<br>{kind}: {answer!r} ({status})"
            if final:
                finals_x.append(depth)
                finals_y.append(name(b))
    rows = [name(b) for b in range(n_rows)]
    scale = [[0.0, COLOURS["incorrect"]], [0.333, COLOURS["incorrect"]], [0.333, COLOURS["correct"]],
             [0.667, COLOURS["correct"]], [0.667, COLOURS["ERR"]], [1.0, COLOURS["ERR"]]]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(1, n_cols + 1)), y=rows, text=text, hovertext=hover,
                               hoverinfo="text", texttemplate="%{text}", textfont={"size": 8}, zmin=0, zmax=2,
                               colorscale=scale, showscale=False, xgap=1, ygap=1, name="answers"))
    fig.add_trace(go.Scatter(x=finals_x, y=finals_y, mode="markers", name="final answer (branch finished)",
                             marker={"symbol": "square-open", "size": 13, "color": "#222", "line": {"width": 2}},
                             hoverinfo="skip"))
    pruned = sorted(grid.pruned)
    fig.add_trace(go.Scatter(x=[grid.depth[b] + 0.8 for b in pruned], y=[name(b) for b in pruned],
                             mode="markers", name="pruned", marker={"symbol": "x", "size": 9, "color": "#222"},
                             hovertext=[f"{name(b)} pruned at step {grid.pruned[b]}" for b in pruned],
                             hoverinfo="text"))
    winners = sorted(grid.winners())
    fig.add_trace(go.Scatter(x=[0.1] * len(winners), y=[name(b) for b in winners], mode="markers",
                             name="backs the returned answer", hoverinfo="skip",
                             marker={"symbol": "star", "size": 11, "color": "#e0a100"}))
    for status, colour in COLOURS.items():  # legend entries for the heatmap colours
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=status,
                                 marker={"symbol": "square", "size": 11, "color": colour}))
    fig.update_yaxes(autorange="reversed", title="branch (opening order)", type="category",
                     tickfont={"size": 9})
    fig.update_xaxes(title=f"segment ({grid.segment_tokens} tokens each)", range=[-0.2, n_cols + 1.5])
    fig.update_layout(height=max(260, 120 + 15 * n_rows), margin={"l": 60, "r": 20, "t": 10, "b": 40},
                      legend={"orientation": "h", "y": -0.12 if n_rows > 20 else -0.3}, plot_bgcolor="#fafafa")
    return fig
