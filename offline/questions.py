r"""Question files for `autotts collect`: JSONL, JSON or Parquet rows with a question and an optional gold answer.

The native row is ``{"question": str, "gold_answer": str (optional)}``. Rows in the shapes of the
common math benchmarks are imported as they are, so a downloaded split needs no conversion:

* ``problem`` / ``Problem`` / ``Question`` as the question (MATH, MATH-500, AIME on Hugging Face);
* ``answer`` / ``Answer`` as the gold answer; numbers become their plain string (``7.0`` → ``"7"``);
  GSM8K's worked answers keep only what follows ``####`` (thousands separators dropped);
* with no answer field, the last ``\boxed{…}`` of ``solution`` / ``Solution`` (MATH).

Every problem is reported in one line naming the file and the line (JSONL) or row (JSON, Parquet).

>>> row_to_item({"problem": "1+1?", "answer": 2}, "f.jsonl:1")
QuestionItem(question='1+1?', gold='2')
>>> row_to_item({"question": "How many?", "answer": "3 + 4 = <<3+4=7>>7\n#### 1,007"}, "gsm8k.jsonl:1").gold
'1007'
>>> row_to_item({"problem": "x?", "solution": "so $x=\\boxed{\\frac{1}{2}}$."}, "math.jsonl:1").gold
'\\frac{1}{2}'
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import QuestionsError

__all__ = ["QuestionItem", "QuestionsError", "read_questions", "row_to_item"]

QUESTION_KEYS = ("question", "problem", "Problem", "Question")
ANSWER_KEYS = ("gold_answer", "answer", "Answer", "final_answer")
SOLUTION_KEYS = ("solution", "Solution")


@dataclass(frozen=True, slots=True)
class QuestionItem:
    question: str
    gold: str | None


def _plain(value: Any, where: str, key: str) -> str:
    if isinstance(value, bool):
        raise QuestionsError(f"{where}: field {key!r} must be a string or number, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise QuestionsError(f"{where}: field {key!r} must be a string or number, got {type(value).__name__}")


def _gold(row: dict[str, Any], where: str) -> str | None:
    for key in ANSWER_KEYS:
        value = row.get(key)
        if value is None:
            continue
        text = _plain(value, where, key)
        if key != "gold_answer" and isinstance(value, str) and "####" in text:  # GSM8K worked answer
            text = text.rpartition("####")[2].strip().replace(",", "")
        return text
    for key in SOLUTION_KEYS:
        value = row.get(key)
        if isinstance(value, str):
            from autotts.engines.answers import final_answer

            return final_answer(value)
    return None


def row_to_item(row: Any, where: str) -> QuestionItem:
    """One row of any supported shape → `QuestionItem`; `where` names the file and line/row in errors."""
    if not isinstance(row, dict):
        raise QuestionsError(f"{where}: expected an object with a 'question' field, got {type(row).__name__}")
    key = next((k for k in QUESTION_KEYS if row.get(k) is not None), None)
    if key is None:
        raise QuestionsError(f"{where}: no question field (one of {', '.join(QUESTION_KEYS)}); "
                             f"fields: {', '.join(map(str, row)) or 'none'}")
    question = row[key]
    if not isinstance(question, str) or not question.strip():
        raise QuestionsError(f"{where}: field {key!r} must be a non-empty string, got {question!r:.60}")
    return QuestionItem(question=question, gold=_gold(row, where))


def _rows(path: Path) -> list[tuple[str, Any]]:
    """(where, row) pairs of the file, by format."""
    name = path.name.lower()
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, pa.ArrowInvalid) as exc:
            raise QuestionsError(f"{path}: not a readable Parquet file ({exc})") from None
        return [(f"{path}: row {i}", row) for i, row in enumerate(rows)]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise QuestionsError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if name.endswith(".jsonl"):
        out = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"{path}:{lineno}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise QuestionsError(f"{path}:{lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
        return out
    if name.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise QuestionsError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: "
                                 f"{exc.msg})") from None
        if isinstance(data, dict):  # {"data": [...]} / {"questions": [...]} / {"rows": [...]}
            data = next((data[k] for k in ("data", "questions", "rows", "examples") if isinstance(data.get(k), list)),
                        data)
        if not isinstance(data, list):
            raise QuestionsError(f"{path}: expected a JSON list of question objects")
        return [(f"{path}: row {i}", row) for i, row in enumerate(data)]
    raise QuestionsError(f"{path}: unknown question file type (use .jsonl, .json or .parquet)")


def read_questions(path: str | Path, *, limit: int | None = None) -> list[QuestionItem]:
    """All questions of `path` in file order (the first `limit` when given)."""
    path = Path(path)
    if not path.is_file():
        raise QuestionsError(f"{path}: no such file")
    rows = _rows(path)
    if limit is not None:
        rows = rows[:limit]
    items = [row_to_item(row, where) for where, row in rows]
    if not items:
        raise QuestionsError(f"{path}: holds no questions")
    return items
