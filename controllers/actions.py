"""The five actions a controller can return.

Actions are immutable and validated on construction. Each is a 4-tuple ``(kind, x, segments,
probe)`` underneath, the compact form the episode machine reads, so no action is ever converted
on the hot path. A controller returns
a *batch* (list) of actions per step; they are applied in list order, so the order is part of the
decision (for example which branch finishes first). Which action is legal when is decided by the
episode machine (`autotts.controllers.episode`), in one table.

>>> Continue(3, segments=2)
Continue(branch=3, segments=2, probe=True)
>>> Continue(3) == Continue(3, 1, True), Continue(3) == Probe(3)
(True, False)
>>> Branch(0)
Traceback (most recent call last):
...
autotts.controllers.errors.IllegalActionError: Branch.n must be a positive int, got 0
"""

from __future__ import annotations

from .errors import IllegalActionError

__all__ = ["ACTION_TYPES", "Action", "Answer", "Branch", "Continue", "Probe", "Prune", "action_dict",
           "action_from_dict", "from_compact"]

# kind codes: the first element of every action tuple
BRANCH, CONTINUE, PROBE, PRUNE, ANSWER = range(5)


def _bad_segments(kind: str, segments: object) -> IllegalActionError:
    return IllegalActionError(f"{kind}.segments must be a positive int or None, got {segments!r}")


def _bad_branch(kind: str, branch: object) -> IllegalActionError:
    return IllegalActionError(f"{kind}.branch must be a branch id (int >= 0), got {branch!r}")


class _Action(tuple):
    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields, self[1:], strict=False))
        return f"{type(self).__name__}({args})"

    def __reduce__(self):
        return type(self), tuple(self[1:1 + len(self._fields)])

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self


class Branch(_Action):
    """Open `n` new branches and decode `segments` segments of each (None: to the end).

    With `probe`, each decoded segment reveals the answer forced at its end; a branch that
    reaches its end always reveals its final answer.
    """

    __slots__ = ()
    _fields = ("n", "segments", "probe")
    __match_args__ = _fields

    def __new__(cls, n: int = 1, segments: int | None = 1, probe: bool = True) -> Branch:
        if type(n) is not int or n < 1:
            raise IllegalActionError(f"Branch.n must be a positive int, got {n!r}")
        if segments is not None and (type(segments) is not int or segments < 1):
            raise _bad_segments("Branch", segments)
        return tuple.__new__(cls, (BRANCH, n, segments, probe is True or bool(probe)))

    n = property(lambda self: self[1], doc="branches to open")
    segments = property(lambda self: self[2], doc="segments to decode (None: to the end)")
    probe = property(lambda self: self[3], doc="reveal the answer after each segment")


class Continue(_Action):
    """Decode `segments` more segments of branch `branch` (None: to the end); stops early at the end."""

    __slots__ = ()
    _fields = ("branch", "segments", "probe")
    __match_args__ = _fields

    def __new__(cls, branch: int, segments: int | None = 1, probe: bool = True) -> Continue:
        if type(branch) is not int or branch < 0:
            raise _bad_branch("Continue", branch)
        if segments is not None and (type(segments) is not int or segments < 1):
            raise _bad_segments("Continue", segments)
        return tuple.__new__(cls, (CONTINUE, branch, segments, probe is True or bool(probe)))

    branch = property(lambda self: self[1], doc="branch id")
    segments = property(lambda self: self[2], doc="segments to decode (None: to the end)")
    probe = property(lambda self: self[3], doc="reveal the answer after each segment")


class Probe(_Action):
    """Reveal the answer forced at the branch's current depth, without decoding further."""

    __slots__ = ()
    _fields = ("branch",)
    __match_args__ = _fields

    def __new__(cls, branch: int) -> Probe:
        if type(branch) is not int or branch < 0:
            raise _bad_branch("Probe", branch)
        return tuple.__new__(cls, (PROBE, branch, None, True))

    branch = property(lambda self: self[1], doc="branch id")


class Prune(_Action):
    """Stop a branch for good; the tokens it already cost stay spent."""

    __slots__ = ()
    _fields = ("branch",)
    __match_args__ = _fields

    def __new__(cls, branch: int) -> Prune:
        if type(branch) is not int or branch < 0:
            raise _bad_branch("Prune", branch)
        return tuple.__new__(cls, (PRUNE, branch, None, False))

    branch = property(lambda self: self[1], doc="branch id")


class Answer(_Action):
    """End the episode with this answer; must be the last action of its batch."""

    __slots__ = ()
    _fields = ("text",)
    __match_args__ = _fields

    def __new__(cls, text: str) -> Answer:
        if not isinstance(text, str):
            raise IllegalActionError(f"Answer.text must be a str, got {type(text).__name__}")
        return tuple.__new__(cls, (ANSWER, str(text), None, False))

    text = property(lambda self: self[1], doc="the episode's answer")


Action = Branch | Continue | Probe | Prune | Answer
ACTION_TYPES = (Branch, Continue, Probe, Prune, Answer)  # indexed by kind code
_NAMES = {cls.__name__: cls for cls in ACTION_TYPES}
_BY_KIND = dict(enumerate(ACTION_TYPES))


def from_compact(kind: object, x: object, segments: object, probe: object) -> Action:
    """An action from its four compact fields (as a worker sends them: segments 0 for None, probe 0 or 1),
    validated like its constructor; raises `IllegalActionError` for anything else. A field that equals an
    integer (``true``, ``2.0`` in JSON) is read as that integer, as a lookup by value would read it."""
    kind, x, segments, probe = (_integral(v) for v in (kind, x, segments, probe))
    cls = _BY_KIND.get(kind) if type(kind) is int else None  # type: ignore[call-overload]
    if type(segments) is int and segments == 0:
        segments = None
    valid_segments = segments is None or (type(segments) is int and segments > 0)  # type: ignore[operator]
    if cls is Continue or cls is Branch:
        if type(x) is int and x >= (cls is Branch) and valid_segments and type(probe) is int and probe in (0, 1):
            return tuple.__new__(cls, (kind, x, segments, probe == 1))
    elif cls is Probe or cls is Prune:
        if type(x) is int and x >= 0:
            return tuple.__new__(cls, (kind, x, None, cls is Probe))
    elif cls is Answer and type(x) is str:
        return tuple.__new__(Answer, (ANSWER, x, None, False))
    raise IllegalActionError(f"not a valid action: kind {kind!r:.20}, fields {x!r:.40}, {segments!r:.20}, "
                             f"{probe!r:.20}")


def _integral(value: object) -> object:
    if type(value) is bool:
        return int(value)
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def action_dict(action: Action) -> dict:
    """The action as plain JSON (execution traces): ``{"type": "Continue", "branch": 3, ...}``."""
    return {"type": type(action).__name__, **dict(zip(action._fields, action[1:], strict=False))}


def action_from_dict(record: dict) -> Action:
    """Inverse of `action_dict`."""
    fields = {k: v for k, v in record.items() if k != "type"}
    return _NAMES[record["type"]](**fields)
