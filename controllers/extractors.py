r"""Answer extractors: how an answer is read out of a branch's text, and how a probe forces one.

An answer is whatever the task calls one: the inside of a ``\boxed{}`` (math, the default), the final
number of a prose answer, a multiple-choice letter, a regular expression's match or one field of a
JSON object. Each `Extractor` reads the final answer of a finished branch (`final`), the answer a probe
produced right after the extractor's answer-forcing `suffix` (`probe`), and writes the short answer
sentence a response carries when the branch's own text is not returned (`sentence`). Extractors are
pure, so replay stores, the evaluator and the gateway read answers the same way; a store records the
`spec` of the extractor that produced its answers. "ERR" marks a text with no extractable answer.

>>> boxed = parse_extractor("boxed")
>>> boxed.probe("42} and more"), boxed.final("<think>\\boxed{1}</think> So \\boxed{\\frac{1}{2}}.")
('42', '\\frac{1}{2}')
>>> parse_extractor("number").final("3 apples and 1,250.5 pears")
'1250.5'
>>> parse_extractor("choice").probe("B) because")
'B'
>>> parse_extractor({"kind": "json", "field": "city"}).final('{"city": "Paris", "n": 2}')
'Paris'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import VoteSpecError as ExtractorError

__all__ = ["EXTRACTORS", "NO_ANSWER", "Extractor", "parse_extractor", "split_thinking"]

NO_ANSWER = "ERR"
EXTRACTORS = ("boxed", "number", "choice", "regex", "json")
THINK_CLOSE = "</think>"  # a probe of a branch that has written it appends only what follows it in the suffix
_THINK_END = "\n" + THINK_CLOSE + "\n\n"
_SUFFIX = {"boxed": _THINK_END + "\\boxed{", "number": _THINK_END + "The final answer is ",
           "choice": _THINK_END + "The answer is (", "regex": _THINK_END, "json": None}
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_FIELDS = {"kind", "pattern", "field", "letters", "suffix"}


def _closing(text: str, start: int) -> int:
    """Index of the brace closing the group opened just before `start`, or -1."""
    depth = 1
    for i in range(start, len(text)):
        c = text[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def split_thinking(text: str) -> tuple[str, str]:
    """(reasoning inside the thinking block, text after it); no block → ("", text)."""
    head, sep, tail = text.partition("</think>")
    if not sep:
        return "", text.strip()
    return head.replace("<think>", "", 1).strip(), tail.strip()


@dataclass(frozen=True)
class Extractor:
    """One way to read answers; build it with `parse_extractor` (which checks its fields)."""

    kind: str = "boxed"
    pattern: str | None = None  # regex: the answer is group 1 (else the whole match)
    field: str | None = None  # json: a dotted path into the object
    letters: str = "ABCDEFGHIJ"  # choice: the option letters
    suffix: str | None = None  # the answer-forcing suffix (None: the kind's own)

    @property
    def default_aggregator(self) -> str:
        """How answers of this kind vote unless a request, arm, controller or config says otherwise: math
        equivalence for math and numbers (``1/2`` = ``0.5``), normalised strings for letters, matches and fields."""
        return "math" if self.kind in ("boxed", "number") else "normalized"

    @property
    def probe_suffix(self) -> str:
        """What a probe appends to a copy of the branch so that its next tokens are the answer."""
        if self.suffix is not None:
            return self.suffix
        if self.kind == "json":
            return _THINK_END + "{" + json.dumps(self.field.split(".")[-1]) + ": "  # type: ignore[union-attr]
        return _SUFFIX[self.kind]

    def spec(self) -> dict[str, Any]:
        """The extractor as plain JSON (store metadata, the response's ``tts``)."""
        out: dict[str, Any] = {"kind": self.kind, "suffix": self.probe_suffix}
        if self.kind == "regex":
            out["pattern"] = self.pattern
        elif self.kind == "json":
            out["field"] = self.field
        elif self.kind == "choice":
            out["letters"] = self.letters
        return out

    # --- reading -------------------------------------------------------------------------
    def final(self, text: str) -> str | None:
        """The final answer of a finished branch: read after its thinking block (else anywhere)."""
        _, _, after = text.rpartition("</think>")
        for part in (after, text) if after != text else (text,):
            answer = getattr(self, f"_final_{self.kind}")(part)
            if answer and answer.strip():
                return answer.strip()
        return None

    def probe(self, text: str) -> str:
        """The answer a probe produced just after the suffix (`NO_ANSWER` when there is none)."""
        answer = getattr(self, f"_probe_{self.kind}")(text)
        return answer.strip() if answer and answer.strip() else NO_ANSWER

    def sentence(self, answer: str) -> str:
        """A short answer sentence, for responses that do not carry the branch's own text."""
        if self.kind == "boxed":
            return f"The answer is $\\boxed{{{answer}}}$."
        if self.kind == "choice":
            return f"The answer is ({answer})."
        if self.kind == "json":
            return json.dumps(_nest(self.field or "answer", _json_value(answer)), ensure_ascii=False)
        return f"The final answer is {answer}." if self.kind == "number" else f"The answer is {answer}."

    # --- per kind --------------------------------------------------------------------------
    def _final_boxed(self, text: str) -> str | None:
        start = text.rfind("\\boxed{")
        while start >= 0:
            end = _closing(text, start + 7)
            if end >= 0:
                return text[start + 7:end].strip() or None
            start = text.rfind("\\boxed{", 0, start)
        return None

    def _probe_boxed(self, text: str) -> str:
        end = _closing(text, 0)
        return text if end < 0 else text[:end]

    def _final_number(self, text: str) -> str | None:
        found = _NUMBER.findall(text)
        return _clean_number(found[-1]) if found else None

    def _probe_number(self, text: str) -> str:
        found = _NUMBER.search(text)
        return _clean_number(found.group()) if found else ""

    def _final_choice(self, text: str) -> str | None:
        letters = re.escape(self.letters)
        for pattern in (rf"(?i:answer|option|choice)\W{{0,6}}(?:is\W{{0,3}})?\(?([{letters}])\b",
                        rf"\(([{letters}])\)", rf"^\W*([{letters}])\W*$"):
            found = re.findall(pattern, text, flags=re.M)
            if found:
                return found[-1]
        return None

    def _probe_choice(self, text: str) -> str:
        found = re.match(rf"\W*([{re.escape(self.letters)}])\b", text)
        return found.group(1) if found else ""

    def _final_regex(self, text: str) -> str | None:
        found = list(re.finditer(self.pattern, text))  # type: ignore[arg-type]
        return _group(found[-1]) if found else None

    def _probe_regex(self, text: str) -> str:
        found = re.search(self.pattern, text)  # type: ignore[arg-type]
        return _group(found) if found else ""

    def _final_json(self, text: str) -> str | None:
        decoder = json.JSONDecoder()
        start = text.rfind("{")
        while start >= 0:
            try:
                value, _ = decoder.raw_decode(text, start)
            except ValueError:
                value = None
            found = _lookup(value, self.field or "")
            if found is not None:
                return found
            start = text.rfind("{", 0, start)
        return None

    def _probe_json(self, text: str) -> str:
        try:
            value, _ = json.JSONDecoder().raw_decode(text.lstrip())
        except ValueError:
            return ""
        return _as_text(value)


def _group(match: re.Match) -> str:
    return match.group(1) if match.re.groups else match.group()


def _clean_number(text: str) -> str:
    return text.replace(",", "")


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _lookup(value: Any, path: str) -> str | None:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return None if value is None else _as_text(value)


def _json_value(answer: str) -> Any:
    try:
        value = json.loads(answer)
    except ValueError:
        return answer
    return value if not isinstance(value, str) else answer


def _nest(path: str, value: Any) -> dict[str, Any]:
    for part in reversed(path.split(".")):
        value = {part: value}
    return value


def parse_extractor(value: str | dict[str, Any] | Extractor | None, where: str = "extractor") -> Extractor:
    """An extractor from a name (``"number"``) or a mapping (``{"kind": "regex", "pattern": "..."}``);
    `ExtractorError` names `where` and the bad field."""
    if isinstance(value, Extractor):
        return value
    if value is None:
        return Extractor()
    if isinstance(value, str) and value.lstrip().startswith("{"):  # a mapping from an env var or a header
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ExtractorError(f"{where} is not valid JSON: {exc}") from None
    spec = {"kind": value} if isinstance(value, str) else value
    if not isinstance(spec, dict):
        raise ExtractorError(f"{where} must be a name ({', '.join(EXTRACTORS)}) or a mapping, got {value!r}")
    unknown = sorted(set(spec) - _FIELDS)
    if unknown:
        raise ExtractorError(f"{where}.{unknown[0]} is not a field of an extractor ({', '.join(sorted(_FIELDS))})")
    kind = spec.get("kind", "boxed")
    if kind not in EXTRACTORS:
        raise ExtractorError(f"{where}.kind must be one of {', '.join(EXTRACTORS)}, got {kind!r}")
    for name in ("pattern", "field", "suffix", "letters"):
        if spec.get(name) is not None and not isinstance(spec[name], str):
            raise ExtractorError(f"{where}.{name} must be a string, got {spec[name]!r}")
    if kind == "regex":
        if not spec.get("pattern"):
            raise ExtractorError(f"{where}.pattern is required for a regex extractor")
        try:
            re.compile(spec["pattern"])
        except re.error as exc:
            raise ExtractorError(f"{where}.pattern is not a regular expression: {exc}") from None
    if kind == "json" and not spec.get("field"):
        raise ExtractorError(f"{where}.field is required for a json extractor (e.g. 'answer')")
    letters = spec.get("letters") or "ABCDEFGHIJ"
    return Extractor(kind, spec.get("pattern"), spec.get("field"), letters, spec.get("suffix"))
