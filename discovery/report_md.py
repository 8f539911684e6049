"""report.md: the run as a person reads it, from the report.json data (`report.build_report`).

In order: how the run went; the frontier after each round against the built-ins (which built-in
points it dominates, and the tokens it saves against each cmc point at matched accuracy); the β curves
of the finalists beside the built-ins on the search and held-out stores (with the standard error of
every accuracy); then per finalist its mechanisms, its lineage back to a seed, its trace evidence,
the code diff from its parent and its code.
"""

from __future__ import annotations

from typing import Any

from .evidence import render_evidence

__all__ = ["render_markdown"]


def _fmt(p: dict[str, Any] | None) -> str:
    if not p:
        return "-"
    se = f" ±{p['acc_se']:.1f}" if p.get("acc_se") is not None else ""
    return f"{p['acc']:.2f}%{se} / {p['tokens']:,.0f}"


def _objective(value: float | None, se: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" ± {se:.3f}" if se else "")


def _head(report: dict[str, Any], pages: list[str]) -> list[str]:
    cfg, llm, racing = report["config"], report["llm"], report.get("racing") or {}
    out = [f"# Discovery run: {cfg['explorer']} explorer", "",
           f"* search stores: {len(cfg['data'])} ({cfg['search_seeds']} seeds), held-out stores: "
           f"{len(cfg['heldout'])} ({cfg['heldout_seeds']} seeds), betas {cfg['betas']}, objective "
           f"{cfg.get('objective', 'gamma')}" + (f" (gamma {cfg['gamma_per_mtok']:g} accuracy points per 1M tokens)"
                                                  if cfg.get("objective", "gamma") == "gamma" else ""),
           f"* {len(report['rounds'])} rounds, {report['evaluations']} evaluations {report['statuses']}, "
           f"stopped: {report['stop_reason']}; search wall time {report['search_wall_s']:.0f}s",
           f"* racing (stages at {cfg.get('race_stages')} seeds, eta {cfg.get('race_eta')}): "
           f"{racing.get('complete', '-')} candidates ran the full sweep, {racing.get('raced_out', '-')} were raced "
           f"out; {racing.get('episodes', 0):,} episodes; {racing.get('per_minute', '-')} candidates per minute",
           f"* LLM: {llm['calls']} calls, {llm['input_tokens']:,} input + {llm['output_tokens']:,} output tokens, "
           f"${llm['usd']:.4f}"]
    if cfg.get("ray_address") is not None:
        out.append(f"* evaluations ran on Ray ({cfg['ray_address'] or 'a local instance'})")
    if pages:
        out.append("* curves drawn by `autotts report`: " + ", ".join(f"[{p}]({p})" for p in pages))
    return out


def _frontier(report: dict[str, Any]) -> list[str]:
    out = ["", "## Frontier per round against the built-ins (search stores; complete candidates)", "",
           "| round | evaluated | raced out | best objective | best | Pareto front (acc% / tokens) | built-ins "
           "dominated (acc >=, tokens <=, better in one) | tokens saved vs cmc at matched accuracy | LLM $ | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["discovery_curve"]:
        pts = r["front"]
        shown = [pts[round(i * (len(pts) - 1) / 7)] for i in range(8)] if len(pts) > 8 else pts
        front = f"{len(pts)} points: " + "; ".join(f"{p['acc']:.1f}/{p['tokens'] / 1000:.0f}k" for p in shown)
        best = "-" if r["best_objective"] is None else f"{r['best_objective']:.3f}"
        saved = ", ".join(f"{s['label'].replace('cmc ', '')} {s['saved_pct']:+.0f}%"
                          for s in r.get("front_cmc_savings", []))
        out.append(f"| {r['round']} | {r.get('evaluated', '-')} | {r.get('raced_out', '-')} | {best} | "
                   f"{r['best_id'] or '-'} | {front} | {len(r.get('front_dominates', []))}: "
                   f"{', '.join(r.get('front_dominates', [])) or 'none'} | {saved or '-'} | {r['llm']['usd']:.4f} | "
                   f"{r['wall_s']:.0f} |")
    return out


def _curves(report: dict[str, Any]) -> list[str]:
    out = []
    betas = report["config"]["betas"]
    for which in ("search", "heldout"):
        base = report["builtins"][which]
        if not base:
            continue
        out += ["", f"## β curves on the {which} stores (mean accuracy % ± standard error / mean tokens per question)",
                "", "| controller | " + " | ".join(f"β={b:g}" for b in betas) + " |", "|---" * (len(betas) + 1) + "|"]
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
    return out


def _finalist(f: dict[str, Any]) -> list[str]:
    held = f["heldout"] or {}
    stages = "; ".join(f"{s['seeds']} seeds: {_objective(s['objective'], s['objective_se'])}"
                       for s in f.get("stages", []))
    out = [f"### {f['id']} (round {f['round']}; {', '.join(f['why'])})", "",
           f"* artifact: `{f['artifact']}`" if f["artifact"] else f"* artifact not written: {f['artifact_error']}",
           f"* objective on search: {_objective(f['objective'], f.get('objective_se'))}"
           + (f" (racing stages: {stages})" if stages else "")
           + f"; held-out: {_objective(held.get('objective'), held.get('objective_se'))}",
           f"* dominates on search: {', '.join(f['search_dominates']) or 'none'}",
           f"* held-out vs built-ins: {held.get('compare', {})}"]
    if f.get("mechanisms"):
        out.append(f"* mechanisms: {', '.join(f['mechanisms'])}")
    if len(f.get("lineage") or []) > 1 or (f.get("lineage") and f["lineage"][0]["change"]):
        out += ["* lineage (first parents, oldest first):"]
        out += [f"  * {step['id']} (round {step['round']}): {step['change']}" for step in f["lineage"]]
    evidence = render_evidence(f.get("evidence"))
    if evidence:
        out += ["", "```text", evidence, "```"]
    if f.get("parent_diff"):
        out += ["", "Code diff from its parent:", "", "```diff", f["parent_diff"].rstrip(), "```"]
    out += ["", "```python", f["source"].rstrip(), "```", ""]
    return out


def _mechanisms(report: dict[str, Any]) -> list[str]:
    rows = report.get("mechanisms") or []
    if not rows:
        return []
    out = ["", "## Mechanisms (block library): how often the search used each, and its best complete candidate", "",
           "| mechanism | candidates | full sweep | best objective |", "|---|---|---|---|"]
    out += [f"| {r['mechanism']} | {r['candidates']} | {r['complete']} | {_objective(r['best_objective'], None)} |"
            for r in rows]
    return out


def render_markdown(report: dict[str, Any], pages: list[str]) -> str:
    out = (_head(report, pages) + _frontier(report) + _curves(report) + _mechanisms(report)
           + ["", "## Finalists", ""])
    for f in report["finalists"]:
        out += _finalist(f)
    return "\n".join(out) + "\n"
