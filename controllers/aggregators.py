r"""Aggregators that know which answers are the same: clusters of answers, and the vote over them.

Raw-string votes split ``1/2``, ``0.5`` and ``\frac{1}{2}`` three ways, and free-form answers that say the
same thing never agree. An `Aggregator` groups answers into clusters and the biggest cluster wins (ties
to the cluster seen first); its winner is the cluster's first raw answer. Two families:

* **equivalence keys**, pure and cheap: ``exact`` (raw strings, the paper's replay semantics),
  ``normalized`` (case, spacing, punctuation, ``$``/``\text{}`` wrappers), ``math`` (`math-verify`
  equivalence, numbers equal within a relative ``tolerance``). The episode machine maps every revealed
  answer to the first-seen answer of its class (`Equivalence`), so every vote in the episode (the
  controller's own `majority`, its stopping rule, the fallback vote) counts classes, offline and live;
* **model-backed**, decided once over the final pool: ``semantic`` (clusters of answers whose sentence
  embeddings have cosine ≥ ``threshold``) and ``judge`` (universal self-consistency: a model is shown the
  distinct candidates and names the most consistent one). They need I/O, which never happens here: the
  driver (the gateway, the evaluator) computes the embeddings or the judge's reply and passes them to
  `Aggregator.vote`; `judge_prompt` and `parse_judge` are the text it sends and reads back.

>>> math = parse_aggregator("math")
>>> vote = math.vote(["1/2", "3", "0.5", "\\frac{1}{2}", "3"])
>>> vote.winner, [(c.answer, c.size) for c in vote.clusters]
('1/2', [('1/2', 3), ('3', 2)])
>>> parse_aggregator("exact").vote(["1/2", "3", "0.5", "3"]).winner
'3'
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import VoteSpecError
from .normalize import math_key, numeric_value

__all__ = ["AGGREGATORS", "Aggregator", "Cluster", "Equivalence", "Vote", "judge_prompt", "normalized_key",
           "parse_aggregator", "parse_judge", "recorded_aggregator"]

AGGREGATORS = ("exact", "normalized", "math", "semantic", "judge")
_OPTIONS = {"math": {"tolerance": 1e-6}, "semantic": {"threshold": 0.7}}
_WRAPPERS = re.compile(r"\\text\{([^{}]*)\}|\\mathrm\{([^{}]*)\}")


def normalized_key(answer: str) -> str:
    """Case, whitespace, ``$`` and ``\\text{}`` wrappers and trailing punctuation removed."""
    text = _WRAPPERS.sub(lambda m: m.group(1) or m.group(2) or "", answer).replace("$", "")
    text = re.sub(r"\s+", " ", text.casefold()).strip()
    return text.strip(" .,;:!?\"'`")


@dataclass(frozen=True)
class Cluster:
    answer: str  # the first raw answer of the cluster (what wins)
    size: int  # votes
    variants: tuple[str, ...]  # the distinct raw answers in it, first seen first

    def as_dict(self) -> dict[str, Any]:
        return {"answer": self.answer, "size": self.size, "variants": list(self.variants)}


@dataclass(frozen=True)
class Vote:
    winner: str | None
    clusters: tuple[Cluster, ...]
    aggregator: str
    detail: dict[str, Any] = field(default_factory=dict)  # e.g. the judge's pick and reply

    def as_dict(self) -> dict[str, Any]:
        return {"aggregator": self.aggregator, "winner": self.winner,
                "clusters": [c.as_dict() for c in self.clusters], **self.detail}


class Equivalence:
    """One episode's classes: maps each answer to the first-seen answer of its class (and remembers
    every raw variant), for key aggregators; `close` joins classes whose keys are near (numbers)."""

    def __init__(self, key: Callable[[str], str], close: Callable[[str, str], bool] | None = None) -> None:
        self.key, self.close = key, close
        self._rep: dict[str, str] = {}  # key → representative
        self._keys: list[tuple[str, str]] = []  # (key, representative) of each class
        self.variants: dict[str, list[str]] = {}  # representative → raw answers seen

    def __call__(self, answer: str) -> str:
        k = self.key(answer)
        rep = self._rep.get(k)
        if rep is None:
            if self.close is not None:
                rep = next((r for rk, r in self._keys if self.close(k, rk)), None)
            if rep is None:
                rep = answer
                self._keys.append((k, rep))
            self._rep[k] = rep
        seen = self.variants.setdefault(rep, [])
        if answer not in seen:
            seen.append(answer)
        return rep


@dataclass(frozen=True)
class Aggregator:
    """A named way to vote; build it with `parse_aggregator` (``"math:tolerance=1e-4"``, ``"semantic"``)."""

    name: str = "exact"
    options: dict[str, float] = field(default_factory=dict)

    @property
    def needs(self) -> str | None:
        """What the driver must supply to `vote`: ``"embeddings"``, ``"judge"`` or None."""
        return {"semantic": "embeddings", "judge": "judge"}.get(self.name)

    @property
    def spec(self) -> str:
        return self.name + "".join(f":{k}={v:g}" for k, v in self.options.items() if v != _OPTIONS[self.name][k])

    def equivalence(self) -> Equivalence | None:
        """A fresh per-episode `Equivalence` (None for exact strings, and for model-backed aggregators,
        which decide once at the end)."""
        if self.name == "normalized":
            return Equivalence(normalized_key)
        if self.name == "math":
            tol = self.options.get("tolerance", _OPTIONS["math"]["tolerance"])
            return Equivalence(math_key, lambda a, b: _near(a, b, tol))
        return None

    def candidates(self, answers: Sequence[str], equivalence: Equivalence | None = None) -> list[str]:
        """The distinct answers a judge is shown (`judge_prompt`), biggest cluster first."""
        return [c.answer for c in Aggregator("judge").vote(answers, equivalence=equivalence).clusters]

    def vote(self, answers: Sequence[str], *, vectors: Sequence[Sequence[float]] | None = None,
             judge_reply: str | None = None, equivalence: Equivalence | None = None) -> Vote:
        """Cluster `answers` (in the order they arrived) and pick the winner.

        `vectors`: one embedding per answer (semantic); `judge_reply`: the judge's text (judge);
        `equivalence`: the episode's classes, whose raw variants the clusters then list.
        """
        if self.name == "semantic":
            if vectors is None or len(vectors) != len(answers):
                raise VoteSpecError("the semantic aggregator needs one embedding per answer")
            labels = _by_similarity(vectors, self.options.get("threshold", _OPTIONS["semantic"]["threshold"]))
            return _vote(self.name, answers, labels, None)
        classes = equivalence or self.equivalence() or Equivalence(normalized_key if self.name == "judge" else str)
        labels = [classes(a) for a in answers]
        if self.name != "judge":
            return _vote(self.name, answers, labels, classes)
        plain = _vote(self.name, answers, labels, classes)
        candidates = [c.answer for c in plain.clusters]
        pick = parse_judge(judge_reply or "", len(candidates))
        detail = {"judge_pick": pick, "judge_reply": (judge_reply or "")[:500]}
        if pick is None:  # the judge said nothing usable: the plain vote stands, and the response says so
            return Vote(plain.winner, plain.clusters, self.name, {**detail, "judge_fallback": "majority"})
        return Vote(candidates[pick], plain.clusters, self.name, detail)


def _vote(name: str, answers: Sequence[str], labels: Sequence[Any], classes: Equivalence | None) -> Vote:
    groups: dict[Any, list[str]] = {}
    for answer, label in zip(answers, labels, strict=True):
        groups.setdefault(label, []).append(answer)
    clusters = []
    for members in groups.values():
        variants = list(dict.fromkeys(members))
        if classes is not None:
            variants = list(dict.fromkeys(v for m in variants for v in classes.variants.get(m, [m])))
        clusters.append(Cluster(members[0], len(members), tuple(variants)))
    ranked = sorted(clusters, key=lambda c: -c.size)  # stable: ties stay in first-seen order
    return Vote(ranked[0].answer if ranked else None, tuple(ranked), name)


def _by_similarity(vectors: Sequence[Sequence[float]], threshold: float) -> list[int]:
    """Leader clustering: each answer joins the first cluster whose first member it is similar to."""
    leaders: list[tuple[int, list[float], float]] = []
    labels = []
    for vec in vectors:
        v = [float(x) for x in vec]
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        for label, lead, lead_norm in leaders:
            if sum(a * b for a, b in zip(v, lead, strict=True)) / (norm * lead_norm) >= threshold:
                labels.append(label)
                break
        else:
            leaders.append((len(leaders), v, norm))
            labels.append(len(leaders) - 1)
    return labels


def _near(a: str, b: str, tolerance: float) -> bool:
    x, y = numeric_value(a), numeric_value(b)
    return x is not None and y is not None and abs(x - y) <= tolerance * max(1.0, abs(x), abs(y))


def judge_prompt(question: str, candidates: Sequence[str]) -> str:
    """Universal self-consistency: the judge is asked which candidate answer the others agree with most."""
    listed = "\n".join(f"Response {i}: {c}" for i, c in enumerate(candidates))
    return (f"Question: {question}\n\nI have generated the following responses to the question:\n\n{listed}\n\n"
            "Evaluate these responses. Select the most consistent response based on majority consensus. "
            'Reply with one line: "The most consistent response is Response X".')


def parse_judge(reply: str, n: int) -> int | None:
    """The index the judge named (``Response 2`` → 2), if it names one of the `n` candidates."""
    found = re.findall(r"[Rr]esponse\s*#?\s*(\d+)", reply) or re.findall(r"\b(\d+)\b", reply)
    for text in found:
        if int(text) < n:
            return int(text)
    return None


def parse_aggregator(value: str | Aggregator | None, where: str = "aggregator") -> Aggregator:
    """An aggregator from its spec: a name with optional options (``semantic:threshold=0.85``)."""
    if isinstance(value, Aggregator):
        return value
    if value is None:
        return Aggregator()
    if not isinstance(value, str):
        raise VoteSpecError(f"{where} must be a string ({', '.join(AGGREGATORS)}), got {value!r}")
    name, *opts = value.strip().split(":")
    name = "normalized" if name == "normalised" else name
    if name not in AGGREGATORS:
        raise VoteSpecError(f"{where}: unknown aggregator {name!r}; choose one of {', '.join(AGGREGATORS)}")
    known = _OPTIONS.get(name, {})
    options: dict[str, float] = dict(known)
    for opt in ",".join(opts).split(",") if opts else []:
        key, sep, raw = opt.partition("=")
        if key.strip() not in known or not sep:
            raise VoteSpecError(f"{where}: {name} takes {', '.join(known) or 'no options'}, got {opt!r}")
        try:
            number = float(raw)
        except ValueError:
            raise VoteSpecError(f"{where}: {name}.{key.strip()} must be a number, got {raw!r}") from None
        if not math.isfinite(number) or number < 0 or (key.strip() == "threshold" and number > 1):
            raise VoteSpecError(f"{where}: {name}.{key.strip()} is out of range: {raw!r}")
        options[key.strip()] = number
    return Aggregator(name, options)


def recorded_aggregator(meta: dict[str, Any]) -> Aggregator:
    """How a replay store's answers vote by default: the aggregator its metadata records (`autotts collect`
    and capture record the one the live gateway would use), else exact strings, the replay table's rule
    for stores that do not say (the bundled Qwen3 stores among them)."""
    return parse_aggregator(meta.get("aggregator"), "store metadata: aggregator")
