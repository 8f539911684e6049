"""The run's report: report.json (everything), report.md (readable), and the evaluation report pages.

Sections: how the run went (rounds, evaluations, stop reason, wall time, LLM tokens and dollars
per round), the discovery curve (best objective and Pareto front after each round), the finalists
(where they came from, their β curves on the search and held-out stores next to parallel_probe
and the cmc sweep) and their code. The β curves are also written as results tables in the
`autotts eval` format (search_results.csv, heldout_results.csv) and, when `autotts report`
(offline/report.py, needs plotly) is available, rendered by it as report_search.html and
report_heldout.html.
"""

from __future__ import annotations

import csv
import io
import logging
from typing import Any

from autotts.controllers.atomic import write_text_atomic

__all__ = ["build_report", "write_report"]

log = logging.getLogger(__name__)

_COLUMNS = ["controller", "beta", "params", "model", "dataset", "accuracy_pct", "avg_tokens", "episodes", "failed",
            "avg_branches", "avg_probes", "wall_s", "spec", "store"]


def build_report(history, config, search_points, heldout_points, heldout, artifacts, *, stop_reason: str,
                 search_wall_s: float) -> dict[str, Any]:
    spend = history.spend()
    finalists = []
    for art in artifacts:
        record = history.get(art["id"])
        finalists.append({"id": record["id"], "round": record["round"], "why": art["why"], "artifact": art["path"],
                          "artifact_error": art["error"], "objective": record["objective"],
                          "class": (record.get("class") or {}).get("name"), "search_curve": record["curve"],
                          "search_dominates": record.get("dominates", []),
                          "heldout": heldout.get(record["key"]), "source": history.source(record)})
    return {
        "config": config.to_json(), "stop_reason": stop_reason, "search_wall_s": round(search_wall_s, 1),
        "rounds": history.rounds, "evaluations": len(history.records),
        "statuses": _counts(r["status"] for r in history.records), "llm": spend,
        "discovery_curve": [{"round": r["round"], "best_objective": r["best_objective"], "best_id": r["best_id"],
                             "front": r["front"], "llm": r["llm"], "wall_s": r["wall_s"]} for r in history.rounds],
        "builtins": {"search": search_points, "heldout": heldout_points}, "finalists": finalists,
    }


def _counts(values) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _results_rows(label: str, curve: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    rows = []
    for p in curve:
        for store, s in p.get("per_store", {}).items():
            model, _, dataset = store.partition("/")
            rows.append({"controller": label, "beta": "" if p["beta"] is None else f"{p['beta']:g}", "params": "",
                         "model": model, "dataset": dataset, "accuracy_pct": round(s["acc"], 6),
                         "avg_tokens": round(s["tokens"], 6), "episodes": s.get("episodes", ""),
                         "failed": s.get("failed", ""), "avg_branches": "", "avg_probes": "", "wall_s": "",
                         "spec": spec if p["beta"] is None else f"{spec}:beta={p['beta']:g}", "store": store})
    return rows


def _results_csv(report: dict[str, Any], which: str) -> str | None:
    rows = []
    for f in report["finalists"]:
        curve = f["search_curve"] if which == "search" else (f["heldout"] or {}).get("curve")
        if curve:
            rows += _results_rows(f"{f['id']}_{f['class']}", curve, f["artifact"] or f["id"])
    for b in report["builtins"][which]:
        rows += _results_rows(b["controller"], [{**b, "beta": b["beta"]}], b["controller"])
    if not rows:
        return None
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_report(history, report: dict[str, Any]) -> None:
    history.write_json("report.json", report)
    pages = []
    for which in ("search", "heldout"):
        text = _results_csv(report, which)
        if text is None:
            continue
        csv_path = history.root / f"{which}_results.csv"
        write_text_atomic(csv_path, text)
        try:
            from autotts.offline.report import build_report as eval_report

            eval_report(csv_path, history.root / f"report_{which}.html",
                        title=f"discovery run {history.root.name}: {which} stores")
            pages.append(f"report_{which}.html")
        except Exception as exc:  # optional (plotly); the Markdown report stands alone
            log.info("no HTML page for the %s curves (%s: %s)", which, type(exc).__name__, exc)
    write_text_atomic(history.root / "report.md", render_markdown(report, pages))


def _fmt(p: dict[str, Any] | None) -> str:
    return "-" if not p else f"{p['acc']:.2f}% / {p['tokens']:,.0f}"


def render_markdown(report: dict[str, Any], pages: list[str]) -> str:
    cfg, llm = report["config"], report["llm"]
    out = [f"# Discovery run: {cfg['explorer']} explorer", "",
           f"* search stores: {len(cfg['data'])} ({cfg['search_seeds']} seeds), held-out stores: "
           f"{len(cfg['heldout'])} ({cfg['heldout_seeds']} seeds), betas {cfg['betas']}, "
           f"gamma {cfg['gamma_per_mtok']:g} accuracy points per 1M tokens",
           f"* {len(report['rounds'])} rounds, {report['evaluations']} evaluations {report['statuses']}, "
           f"stopped: {report['stop_reason']}; search wall time {report['search_wall_s']:.0f}s",
           f"* LLM: {llm['calls']} calls, {llm['input_tokens']:,} input + {llm['output_tokens']:,} output tokens, "
           f"${llm['usd']:.4f}"]
    if pages:
        out.append("* curves drawn by `autotts report`: " + ", ".join(f"[{p}]({p})" for p in pages))
    out += ["", "## Discovery curve", "", "| round | best objective | best | Pareto front (acc% / tokens) | "
            "LLM $ | wall s |", "|---|---|---|---|---|---|"]
    for r in report["discovery_curve"]:
        pts = r["front"]
        shown = [pts[round(i * (len(pts) - 1) / 7)] for i in range(8)] if len(pts) > 8 else pts
        front = f"{len(pts)} points: " + "; ".join(f"{p['acc']:.1f}/{p['tokens'] / 1000:.0f}k" for p in shown)
        best = "-" if r["best_objective"] is None else f"{r['best_objective']:.3f}"
        out.append(f"| {r['round']} | {best} | {r['best_id'] or '-'} | {front} | {r['llm']['usd']:.4f} | "
                   f"{r['wall_s']:.0f} |")
    for which in ("search", "heldout"):
        base = report["builtins"][which]
        if not base:
            continue
        out += ["", f"## β curves on the {which} stores (mean accuracy % / mean tokens per question)", ""]
        betas = cfg["betas"]
        out.append("| controller | " + " | ".join(f"β={b:g}" for b in betas) + " |")
        out.append("|---" * (len(betas) + 1) + "|")
        for f in report["finalists"]:
            curve = f["search_curve"] if which == "search" else (f["heldout"] or {}).get("curve") or []
            by = {p["beta"]: p for p in curve}
            out.append(f"| {f['id']} ({', '.join(f['why'])}) | " + " | ".join(_fmt(by.get(b)) for b in betas) + " |")
        cmc = {p["beta"]: p for p in base if p["controller"] == "cmc"}
        if cmc:
            out.append("| cmc | " + " | ".join(_fmt(cmc.get(b)) for b in betas) + " |")
        for p in base:
            if p["controller"] != "cmc":
                out.append(f"| {p['label']} | {_fmt(p)} |" + " |" * (len(betas) - 1))
    out += ["", "## Finalists", ""]
    for f in report["finalists"]:
        held = f["heldout"] or {}
        out += [f"### {f['id']} (round {f['round']}; {', '.join(f['why'])})", "",
                f"* artifact: `{f['artifact']}`" if f["artifact"] else f"* artifact not written: {f['artifact_error']}",
                f"* objective on search: {f['objective']:.3f}; held-out: "
                f"{held.get('objective') if held.get('objective') is None else round(held['objective'], 3)}",
                f"* dominates on search: {', '.join(f['search_dominates']) or 'none'}",
                f"* held-out vs built-ins: {held.get('compare', {})}", "", "```python", f["source"].rstrip(), "```",
                ""]
    return "\n".join(out) + "\n"
