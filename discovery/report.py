"""The run's report: report.json (everything), report.md (readable, `report_md.py`), and the evaluation pages.

Sections: how the run went (rounds, evaluations, racing, stop reason, wall time, LLM tokens and
dollars per round), the frontier after each round against the built-ins, the finalists (their
mechanisms and lineage, the code diff from their parent, their trace evidence, their β curves on
the search and held-out stores next to parallel_probe and the cmc sweep) and their code. The β
curves are also written as results tables in the
`autotts eval` format (search_results.csv, heldout_results.csv) and, when `autotts report`
(offline/report.py, needs plotly) is available, rendered by it as report_search.html and
report_heldout.html.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
from typing import Any

from autotts.controllers.atomic import write_text_atomic

from .report_md import render_markdown

__all__ = ["build_report", "lineage", "parent_diff", "write_report"]

log = logging.getLogger(__name__)

_COLUMNS = ["controller", "beta", "params", "model", "dataset", "accuracy_pct", "avg_tokens", "episodes", "failed",
            "avg_branches", "avg_probes", "wall_s", "spec", "store"]


def lineage(history, record: dict[str, Any]) -> list[dict[str, Any]]:
    """The record's first-parent chain back to a seed, oldest first: (id, round, what changed)."""
    chain, seen = [], set()
    while record is not None and record["id"] not in seen:
        seen.add(record["id"])
        meta = record.get("meta") or {}
        chain.append({"id": record["id"], "round": record.get("round"),
                      "change": meta.get("change", record.get("note", "")), "mechanisms": meta.get("mechanisms")})
        parents = meta.get("parents") or []
        record = history.get(parents[0]) if parents else None
    return chain[::-1]


def parent_diff(history, record: dict[str, Any]) -> str | None:
    """The unified diff of the record's code against its first parent's (None for a seed)."""
    parents = (record.get("meta") or {}).get("parents") or []
    parent = history.get(parents[0]) if parents else None
    if parent is None:
        return None
    return "".join(difflib.unified_diff(history.source(parent).splitlines(keepends=True),
                                        history.source(record).splitlines(keepends=True),
                                        fromfile=f"{parent['id']}.py", tofile=f"{record['id']}.py", n=2))


def build_report(history, config, search_points, heldout_points, heldout, artifacts, *, stop_reason: str,
                 search_wall_s: float) -> dict[str, Any]:
    spend = history.spend()
    finalists = []
    for art in artifacts:
        record = history.get(art["id"])
        finalists.append({"id": record["id"], "round": record["round"], "why": art["why"], "artifact": art["path"],
                          "artifact_error": art["error"], "objective": record["objective"],
                          "objective_se": record.get("objective_se"), "stages": record.get("stages", []),
                          "class": (record.get("class") or {}).get("name"), "search_curve": record["curve"],
                          "search_dominates": record.get("dominates", []), "evidence": record.get("evidence"),
                          "mechanisms": (record.get("meta") or {}).get("mechanisms"),
                          "lineage": lineage(history, record), "parent_diff": parent_diff(history, record),
                          "heldout": heldout.get(record["key"]), "source": history.source(record)})
    records = history.records
    return {
        "config": config.to_json(), "stop_reason": stop_reason, "search_wall_s": round(search_wall_s, 1),
        "rounds": history.rounds, "evaluations": len(records),
        "statuses": _counts(r["status"] for r in records), "llm": spend,
        "racing": {"complete": sum(bool(r.get("complete", r["status"] == "ok")) for r in records),
                   "raced_out": sum(bool(r.get("raced_out")) for r in records),
                   "episodes": sum(c["episodes"] for r in records for c in r.get("cells") or []),
                   "per_minute": round(60 * len(records) / search_wall_s, 2) if search_wall_s else None},
        "discovery_curve": [{"round": r["round"], "best_objective": r["best_objective"], "best_id": r["best_id"],
                             "front": r["front"], "llm": r["llm"], "wall_s": r["wall_s"],
                             "evaluated": len(r.get("evaluations", [])), "raced_out": r.get("raced_out", 0),
                             "front_dominates": r.get("front_dominates", []),
                             "front_cmc_savings": r.get("front_cmc_savings", [])} for r in history.rounds],
        "mechanisms": mechanism_table(records),
        "builtins": {"search": search_points, "heldout": heldout_points}, "finalists": finalists,
    }


def mechanism_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mechanism of the block library: how many candidates used it, how many of those ran the full
    sweep, and the best objective among them (best first)."""
    table: dict[str, dict[str, Any]] = {}
    for r in records:
        for title in (r.get("meta") or {}).get("mechanisms") or []:
            row = table.setdefault(title, {"mechanism": title, "candidates": 0, "complete": 0, "best_objective": None})
            row["candidates"] += 1
            if r["status"] == "ok" and r.get("complete", True):
                row["complete"] += 1
                if row["best_objective"] is None or r["objective"] > row["best_objective"]:
                    row["best_objective"] = r["objective"]
    return sorted(table.values(), key=lambda row: -(row["best_objective"] if row["best_objective"] is not None
                                                     else float("-inf")))


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


