"""The tools an LLM explorer may call, described once and dispatched once for every API flavour.

`TOOLS` holds name, description and JSON schema; `anthropic_tools()` / `openai_tools()` wrap them
in each wire format. `ToolBox.call(name, arguments)` runs a call against the round's session and
returns the text to send back plus an error flag; bad arguments are an error *reply*, never an
exception, so a confused model can recover.
"""

from __future__ import annotations

from typing import Any

from .base import Session
from .prompts import render_history, render_record

__all__ = ["TOOLS", "ToolBox", "anthropic_tools", "openai_tools"]

TOOLS: list[dict[str, Any]] = [
    {"name": "evaluate_controller",
     "description": "Evaluate controller code (a Python module defining exactly one GeneratorController or "
                    "Controller subclass with a beta schedule) in the sandbox over the beta sweep on the search "
                    "stores. Returns status, errors, the beta curve (accuracy, tokens), the objective, whether "
                    "tokens grow with beta, which built-ins it dominates, and the id of the candidate.",
     "schema": {"type": "object", "properties": {
         "code": {"type": "string", "description": "the complete Python module"},
         "note": {"type": "string", "description": "one line: the idea behind this candidate"}},
         "required": ["code"]}},
    {"name": "inspect_trace",
     "description": "Show the branch x depth grid of a wrong episode of an evaluated candidate: one row per "
                    "branch, one letter per probed segment, pruned and finished marks.",
     "schema": {"type": "object", "properties": {
         "candidate_id": {"type": "string"}, "index": {"type": "integer", "description": "which grid (0, 1...)"}},
         "required": ["candidate_id"]}},
    {"name": "read_history",
     "description": "Without candidate_id: a table of all candidates so far (status, objective, curve). With "
                    "candidate_id: that candidate's code, full curve and errors.",
     "schema": {"type": "object", "properties": {"candidate_id": {"type": "string"}}}},
    {"name": "submit",
     "description": "End this round, naming the candidate you consider best so far.",
     "schema": {"type": "object", "properties": {
         "candidate_id": {"type": "string"}, "reason": {"type": "string"}}, "required": ["candidate_id"]}},
]


def anthropic_tools() -> list[dict[str, Any]]:
    return [{"name": t["name"], "description": t["description"], "input_schema": t["schema"]} for t in TOOLS]


def openai_tools() -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": t["name"], "description": t["description"],
                                              "parameters": t["schema"]}} for t in TOOLS]


class ToolBox:
    """Executes tool calls for one round."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.submitted: str | None = None
        self.evaluated: list[str] = []

    def _record(self, candidate_id: Any) -> dict[str, Any] | None:
        return next((r for r in self.session.records() if r["id"] == candidate_id), None)

    def call(self, name: str, arguments: Any) -> tuple[str, bool]:
        """(reply text, is_error) for one tool call."""
        if not isinstance(arguments, dict):
            return f"arguments of {name} must be a JSON object", True
        if name == "evaluate_controller":
            code = arguments.get("code")
            if not isinstance(code, str) or not code.strip():
                return "evaluate_controller needs 'code': the complete Python module as a string", True
            record = self.session.evaluate(code, str(arguments.get("note", ""))[:300], {})
            self.evaluated.append(record["id"])
            return render_record(record, self.session.gamma, grids=1), record["status"] != "ok"
        if name == "inspect_trace":
            record = self._record(arguments.get("candidate_id"))
            if record is None:
                return f"no candidate {arguments.get('candidate_id')!r}", True
            grids = record.get("grids") or []
            index = arguments.get("index", 0)
            if not isinstance(index, int) or not 0 <= index < len(grids):
                return f"candidate {record['id']} has {len(grids)} grid(s) of wrong episodes", not grids
            return grids[index]["text"], False
        if name == "read_history":
            cid = arguments.get("candidate_id")
            if cid is None:
                return render_history(self.session.records(), self.session.baselines(), self.session.gamma), False
            record = self._record(cid)
            if record is None:
                return f"no candidate {cid!r}", True
            code = self.session.source_of(record["id"]) or ""
            return render_record(record, self.session.gamma, grids=0) + "\n\ncode:\n" + code, False
        if name == "submit":
            record = self._record(arguments.get("candidate_id"))
            if record is None:
                return f"no candidate {arguments.get('candidate_id')!r}", True
            self.submitted = record["id"]
            self.session.submit(record["id"], str(arguments.get("reason", ""))[:300])
            return f"submitted {record['id']}; the round ends", False
        return f"unknown tool {name!r}; tools: {', '.join(t['name'] for t in TOOLS)}", True
