"""`autotts report`: one self-contained HTML page from an evaluation's results.csv (+ episodes, traces).

Sections: accuracy–tokens scaling curves per (model, dataset) and averaged over cells (log tokens;
a line per controller across β, a marker per fixed baseline, the Pareto frontier dashed), tokens
saved against self-consistency at matched accuracy, the Pareto frontier per panel, a sortable
table of every row, and the branch × depth grid of traced episodes. Plots are plotly figures with
plotly.js inlined once, so the file opens anywhere without a network. The numbers come from
report_stats.py; the grid from report_grid.py.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from autotts.controllers.atomic import write_text_atomic

from .report_stats import (
    MEAN,
    Point,
    ReportError,
    add_confidence,
    mean_points,
    pareto,
    read_points,
    savings_vs_sc,
    series_of,
)

__all__ = ["ReportError", "build_report"]

log = logging.getLogger(__name__)

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#ad494a"]


def _import_plotly():
    try:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots
    except ImportError as exc:
        raise ReportError("autotts report needs plotly: pip install 'autotts[report]'") from exc
    return go, make_subplots


def build_report(results: str | Path, out: str | Path, *, episodes: str | Path | None = None,
                 traces: str | Path | None = None, grid_limit: int = 4, grid_episode: str | None = None,
                 title: str | None = None) -> Path:
    """Write the HTML report for `results` to `out` (atomically) and return its path."""
    _import_plotly()
    points = read_points(results)
    if episodes is not None:
        add_confidence(points, episodes)
    cells = sorted({p.cell for p in points})
    panels = ([(MEAN, mean_points(points))] if len(cells) > 1 else []) + \
             [(cell, [p for p in points if p.cell == cell]) for cell in cells]
    panels = [(cell, members) for cell, members in panels if members]
    labels = _Names(points)
    colours = {key: PALETTE[i % len(PALETTE)] for i, key in enumerate(labels.series)}
    frontiers = {cell: pareto(members) for cell, members in panels}

    figures = [_scaling_figure(panels, frontiers, labels, colours)]
    body = [f"<h1>{html.escape(title or 'autotts evaluation report')}</h1>",
            _summary(points, cells, results, episodes, traces),
            "<h2 id=curves>Accuracy–tokens scaling</h2>",
            "<p class=note>Tokens are mean tokens per question (log scale). Lines join one controller's "
            "configurations across β (or a fixed controller's parameter variants, e.g. sc at several n); "
            "single points are fixed baselines; the dashed grey line is the Pareto frontier of every point in "
            "the panel. <b>all / mean</b> averages accuracy and tokens over every (model, dataset) cell, for "
            "configurations evaluated on all of them. Click a legend entry to hide it in every panel."
            + (" Error bars: 95% interval over shuffle seeds." if episodes is not None else "") + "</p>",
            _slot(0),
            "<h2 id=savings>Tokens saved against self-consistency at matched accuracy</h2>",
            _savings_table(points, labels),
            "<h2 id=frontier>Pareto frontier</h2>", _frontier_table(frontiers, labels),
            "<h2 id=table>All results</h2><p class=note>Click a column header to sort.</p>",
            _results_table(points, frontiers)]
    if traces is not None:
        grid_html, grid_figs = _grid_section(traces, points, grid_limit, grid_episode, start=len(figures))
        body += [grid_html]
        figures += grid_figs
    page = "\n".join(body)
    for i, fig in enumerate(figures):  # plotly.js goes inline once, with the first figure
        page = page.replace(_slot(i), fig.to_html(full_html=False, include_plotlyjs=i == 0,
                                                        config={"displaylogo": False}), 1)
    out = Path(out)
    write_text_atomic(out, _PAGE.format(title=html.escape(title or "autotts report"), body=page))
    return out


def _slot(i: int) -> str:
    return f"<!--autotts-figure-{i}-->"


class _Names:
    """Display names: one per series (parameters shown only where a controller has several series)
    and one per point (series name plus β, or plus parameters for a fixed controller run several ways)."""

    def __init__(self, points: list[Point]) -> None:
        groups = series_of(points)
        names = [k[0] for k in groups]
        self.series = {k: k[0] if names.count(k[0]) == 1 or not k[1] else f"{k[0]} ({k[1]})" for k in groups}
        self.varied = {k[0] for k, curve in groups.items() if not k[1] and len({p.params for p in curve}) > 1}

    def point(self, p: Point) -> str:
        label = self.series.get(p.series, p.controller)
        if p.beta is not None:
            return f"{label} β={p.beta:g}"
        return f"{label} ({p.params})" if p.controller in self.varied and p.params else label


def _cell_name(cell: tuple[str, str]) -> str:
    return "all cells (mean)" if cell == MEAN else f"{cell[0]} / {cell[1]}"


def _fmt_tokens(tokens: float) -> str:
    return f"{tokens / 1e6:.2f}M" if tokens >= 1e6 else f"{tokens / 1e3:.1f}k" if tokens >= 1e3 else f"{tokens:.0f}"


def _scaling_figure(panels, frontiers, labels, colours):
    go, make_subplots = _import_plotly()
    cols = 3 if len(panels) > 4 else min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_cell_name(c) for c, _ in panels],
                        horizontal_spacing=0.07, vertical_spacing=min(0.32 / rows + 0.04, 0.9 / max(1, rows - 1)))
    shown: set[str] = set()
    for i, (cell, members) in enumerate(panels):
        r, c = i // cols + 1, i % cols + 1
        for key, curve in series_of(members).items():
            label = labels.series[key]
            hover = [f"{labels.point(p)}<br>{_cell_name(cell)}<br>accuracy {p.accuracy:.2f}%"
                     + (f" ± {p.ci:.2f}" if p.ci is not None else "") + f"<br>tokens {p.tokens:,.0f}" for p in curve]
            errors = [p.ci for p in curve]
            fig.add_trace(go.Scatter(
                x=[p.tokens for p in curve], y=[p.accuracy for p in curve], name=label, legendgroup=label,
                showlegend=label not in shown, mode="lines+markers" if len(curve) > 1 else "markers",
                marker={"color": colours[key], "size": 7 if len(curve) > 1 else 11,
                        "symbol": "circle" if len(curve) > 1 else "diamond"},
                line={"color": colours[key], "width": 2}, hovertext=hover, hoverinfo="text",
                error_y={"type": "data", "array": errors, "visible": True, "thickness": 1}
                if any(e is not None for e in errors) else None), row=r, col=c)
            shown.add(label)
        front = frontiers[cell]
        fig.add_trace(go.Scatter(
            x=[p.tokens for p in front], y=[p.accuracy for p in front], name="Pareto frontier",
            legendgroup="Pareto frontier", showlegend="Pareto frontier" not in shown, mode="lines",
            line={"color": "#888", "dash": "dash", "width": 1.5, "shape": "hv"}, hoverinfo="skip"), row=r, col=c)
        shown.add("Pareto frontier")
    fig.update_xaxes(type="log", title_text="tokens per question", title_standoff=2, title_font={"size": 11})
    fig.update_yaxes(title_text="accuracy %", title_standoff=2, title_font={"size": 11})
    fig.update_layout(height=300 * rows + 90, margin={"l": 50, "r": 20, "t": 70, "b": 40}, hovermode="closest",
                      legend={"orientation": "h", "yref": "container", "y": 1.0, "yanchor": "top", "x": 0},
                      template="plotly_white")
    return fig


def _summary(points, cells, results, episodes, traces) -> str:
    controllers = sorted({p.controller for p in points})
    sources = [f"results <code>{html.escape(Path(results).name)}</code>"]
    if episodes is not None:
        sources.append(f"episodes <code>{html.escape(Path(episodes).name)}</code>")
    if traces is not None:
        sources.append(f"traces <code>{html.escape(Path(traces).name)}/</code>")
    return (f"<p class=summary>{len(points)} rows · {len(cells)} (model, dataset) cells · controllers: "
            f"{html.escape(', '.join(controllers))} · from {', '.join(sources)}</p>")


def _savings_table(points, labels) -> str:
    savings = savings_vs_sc(points)
    means = mean_points(points)
    if len({p.cell for p in points}) > 1:
        savings += savings_vs_sc(means)
    if not savings:
        return "<p class=note>No sc rows to compare with: add <code>--controller sc</code> to the evaluation.</p>"
    cells = sorted({s.cell for s in savings}, key=lambda c: (c != MEAN, c))
    series = list(dict.fromkeys(s.series for s in savings))
    found = {(s.series, s.cell): s for s in savings}
    head = "".join(f"<th>{html.escape(_cell_name(c))}</th>" for c in cells)
    rows = []
    for key in series:
        tds = []
        for cell in cells:
            s = found.get((key, cell))
            if s is None:
                tds.append("<td></td>")
            elif s.tokens is None:
                tds.append(f"<td class=miss title='best {s.best.accuracy:.2f}% at {_fmt_tokens(s.best.tokens)} "
                           f"vs sc {s.sc.accuracy:.2f}%'>not reached</td>")
            else:
                cls = "good" if s.saved_pct > 0 else "bad"
                tds.append(f"<td class={cls} title='{_fmt_tokens(s.tokens)} vs sc {_fmt_tokens(s.sc.tokens)} at "
                           f"{s.sc.accuracy:.2f}%'>{s.saved_pct:+.1f}%</td>")
        rows.append(f"<tr><th>{html.escape(labels.series.get(key, key[0]))}</th>{''.join(tds)}</tr>")
    return ("<p class=note>Per cell, the reference is the most expensive sc row. For each other controller the "
            "page finds the fewest tokens at which its curve reaches sc's accuracy: walking its points from the "
            "cheapest, the first at or above sc's accuracy, interpolated linearly in log(tokens) from the "
            "cheaper point below it. Shown: tokens saved relative to sc (positive = cheaper); <i>not "
            "reached</i> = no configuration matched sc's accuracy (hover for the best one).</p>"
            f"<table class=grid><tr><th>controller</th>{head}</tr>{''.join(rows)}</table>")


def _frontier_table(frontiers, labels) -> str:
    rows = []
    for cell, front in frontiers.items():
        members = " → ".join(f"{html.escape(labels.point(p))} <span class=dim>({p.accuracy:.1f}%, "
                             f"{_fmt_tokens(p.tokens)})</span>" for p in front)
        rows.append(f"<tr><th>{html.escape(_cell_name(cell))}</th><td class=left>{members}</td></tr>")
    return ("<p class=note>Configurations no other one beats on both accuracy and tokens, cheapest first.</p>"
            f"<table class=grid>{''.join(rows)}</table>")


_COLUMNS = [("controller", "controller", ""), ("β", "beta", ""), ("params", "params", ""), ("model", "model", ""),
            ("dataset", "dataset", ""), ("accuracy %", "accuracy_pct", "{:.2f}"),
            ("avg tokens", "avg_tokens", "{:,.0f}"), ("episodes", "episodes", ""), ("failed", "failed", ""),
            ("avg branches", "avg_branches", "{:.1f}"), ("avg probes", "avg_probes", "{:.1f}")]


def _results_table(points: list[Point], frontiers) -> str:
    on_front = {id(p) for cell, front in frontiers.items() if cell != MEAN for p in front}
    sc_ref: dict[tuple[str, str], Point] = {}
    for p in points:
        if p.controller == "sc" and (p.cell not in sc_ref or p.tokens > sc_ref[p.cell].tokens):
            sc_ref[p.cell] = p
    with_ci = any(p.ci is not None for p in points)
    head = [name for name, _, _ in _COLUMNS] + (["± 95%"] if with_ci else []) + ["tokens / sc", "Δ acc vs sc",
                                                                                "Pareto"]
    rows = []
    for p in points:
        tds = [_td(p.row.get(col, ""), fmt) for _, col, fmt in _COLUMNS]
        if with_ci:
            tds.append(_td(p.ci, "{:.2f}"))
        sc = sc_ref.get(p.cell)
        tds.append(_td(p.tokens / sc.tokens if sc else "", "{:.3f}"))
        tds.append(_td(p.accuracy - sc.accuracy if sc else "", "{:+.2f}"))
        tds.append(_td("★" if id(p) in on_front else ""))
        rows.append(f"<tr>{''.join(tds)}</tr>")
    ths = "".join(f"<th onclick='sortTable(this)'>{html.escape(h)}</th>" for h in head)
    return f"<table id=results class=sortable><thead><tr>{ths}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _td(value: Any, fmt: str = "") -> str:
    """A table cell; numbers are right-aligned, shown with `fmt` and sorted by their exact value."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"<td>{html.escape('' if value is None else str(value))}</td>"
    shown = fmt.format(number) if fmt else str(value)
    return f"<td class=num data-v='{number!r}'>{html.escape(shown)}</td>"


def _grid_section(traces, points, limit, episode, start):
    from .report_grid import choose_episodes, grid_figure, read_traces, rebuild
    from .store import StoreError, load_store

    stores = {(p.spec, p.model, p.dataset): p.row.get("store", "") for p in points}
    chosen = choose_episodes(read_traces(traces), limit, episode)
    parts = ["<h2 id=grid>Branch × depth grid of a traced episode</h2>"]
    if not chosen:
        return parts[0] + "<p class=note>No traced episodes in the traces directory.</p>", []
    first = chosen[0]
    parts.append(f"<p class=note>{html.escape(first['model'])} / {html.escape(first['dataset'])}, question "
                 f"{first['question']}, shuffle seed {first['seed']}, under each traced controller. Rows are branches "
                 "in opening order, columns decoded segments; a cell is an answer the controller saw (a probe, or "
                 "the final answer in a framed cell when the branch finished), green when it equals the gold "
                 "answer, red when not, grey for ERR (no answer extracted). ✕ marks a pruned branch after its last "
                 "segment, ★ an unpruned branch whose newest answer is the returned one. Hover a cell for the "
                 "step that revealed it.</p>")
    figures, loaded = [], {}
    for line in chosen:
        path = stores.get((line["spec"], line["model"], line["dataset"]), "")
        try:
            if path not in loaded:
                loaded[path] = load_store(path)
        except (StoreError, OSError) as exc:
            parts.append(f"<p class=miss>{html.escape(line['spec'])}: the grid needs the replay store the episode "
                         f"came from ({html.escape(str(exc))}).</p>")
            continue
        try:
            grid = rebuild(line, loaded[path])
        except ReportError as exc:  # e.g. the store changed since the evaluation: the rest of the page stands
            parts.append(f"<p class=miss>{html.escape(str(exc))}</p>")
            continue
        verdict = "correct" if line.get("correct") else "incorrect" if line.get("correct") is False else "unlabelled"
        n_pruned = len(grid.pruned)
        parts.append(f"<h3>{html.escape(line['spec'])}</h3><p class=dim>answer {html.escape(repr(line['answer']))}"
                     f" ({verdict}; gold {html.escape(repr(grid.gold))}) · {int(line['tokens']):,} tokens · "
                     f"{len(grid.cells)} branches, {n_pruned} pruned · {len(line['trace'])} actions</p>"
                     + _slot(start + len(figures)))
        figures.append(grid_figure(grid))
    return "\n".join(parts), figures


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px 32px; color: #222; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 18px; margin-top: 32px; }}
h3 {{ font-size: 15px; margin: 20px 0 0; }}
.note, .summary {{ max-width: 1100px; font-size: 13px; color: #444; }} .dim {{ color: #777; font-size: 12px; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 7px; text-align: right; }}
table.sortable td {{ white-space: nowrap; }}
td.left {{ text-align: left; }} th {{ background: #f3f3f3; }}
table.sortable th {{ cursor: pointer; user-select: none; }} table.sortable th:hover {{ background: #e4e4e4; }}
table.sortable td:not(.num) {{ text-align: left; }}
td.good {{ background: #e3f4e7; }} td.bad {{ background: #fbe6e4; }} td.miss, p.miss {{ color: #999; }}
</style></head><body>
{body}
<script>
function sortTable(th) {{
  const table = th.closest("table"), body = table.tBodies[0], i = th.cellIndex;
  const up = th.dataset.dir !== "asc";
  table.querySelectorAll("th").forEach(h => delete h.dataset.dir);
  th.dataset.dir = up ? "asc" : "desc";
  const key = r => {{ const c = r.cells[i]; return c.dataset.v !== undefined ? parseFloat(c.dataset.v)
                                                                        : c.textContent; }};
  const rows = Array.from(body.rows).sort((a, b) => {{
    const x = key(a), y = key(b);
    const c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return up ? c : -c; }});
  rows.forEach(r => body.appendChild(r));
}}
</script>
</body></html>
"""
