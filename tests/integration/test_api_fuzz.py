"""Bad input never crashes or hangs the gateway: property-based fuzzing of the HTTP API.

Two layers against the real app on uvicorn (loopback; small caps so valid random requests finish in
milliseconds):

* schemathesis walks every operation of the app's own OpenAPI schema (`/openapi.json`), with valid and
  schema-violating inputs; each response must not be a server error and must arrive within a bound.
* hypothesis builds raw bodies for the POST endpoints that a schema cannot describe: a valid request
  with fields replaced by arbitrary JSON (wrong types, huge numbers, NaN/Infinity, deep nesting,
  unicode, controller specs), arbitrary bytes, wrong content types, odd selection headers.

Every response must be < 500, every 4xx must be an OpenAI-style error object (``error.message`` /
``error.type``), every 200 must be complete (a JSON completion, or an SSE stream ending in ``[DONE]``
without an error event), and nothing may hang (each call has a hard client timeout). After the
fuzzing the gateway must have no episode left in flight. Specific bugs found this way are pinned as
regressions at the bottom. Request-shape unit tests: tests/unit/test_server_api.py.
"""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from tests.conftest import require_modules

require_modules("fastapi", "schemathesis", reason="pip install 'autotts[dev]' (schemathesis fuzzes the HTTP API)")

import httpx  # noqa: E402
import schemathesis  # noqa: E402
from autotts.offline.evaluate import bundled_data_dir  # noqa: E402
from autotts.offline.store import load_store  # noqa: E402
from autotts.server.app import build_app  # noqa: E402
from autotts.server.background import BackgroundServer  # noqa: E402
from autotts.server.config import GatewayConfig  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

STORE = bundled_data_dir() / "Qwen3-8B" / "aime25.parquet"
QUESTIONS = load_store(STORE).questions
TOKEN = "fuzz-admin-token"
CAPS = {"stores": [str(STORE)], "max_n": 2, "max_tokens": 4096, "default_max_tokens": 1024,
        "max_total_tokens": 400_000, "max_branches": 16, "max_concurrent": 16, "request_timeout_s": 10,
        "admin_token": TOKEN, "arms": [{"name": "a", "controller": "sc", "weight": 1},
                                       {"name": "b", "controller": "cmc", "beta": 0.5, "weight": 2}]}
TIMEOUT_S = 15.0  # per call: a hang fails the test instead of stalling it
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SCALE = float(os.environ.get("AUTOTTS_FUZZ_SCALE", "1"))  # e.g. 10 for a longer hunt; CI runs 1
FUZZ = settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))



def _scaled(examples: int) -> int:
    return max(1, round(examples * SCALE))


APP = build_app(GatewayConfig.load(overrides=CAPS))
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())


@pytest.fixture(scope="module")
def gateway_url():
    with BackgroundServer(APP) as url:
        yield url
        health = httpx.get(url + "/health", timeout=TIMEOUT_S).json()
        assert health["in_flight"] == 0, f"fuzzing left episodes in flight: {health}"
        for path in ("/metrics", "/v1/models"):  # no request may have poisoned shared state (labels, caches)
            assert httpx.get(url + path, timeout=TIMEOUT_S).status_code == 200, path


@pytest.fixture(scope="module")
def client(gateway_url):
    with httpx.Client(base_url=gateway_url, timeout=TIMEOUT_S) as c:
        yield c


def check_reply(response: httpx.Response) -> None:
    """< 500; a 4xx carries an OpenAI error object; a 200 is complete (JSON, or SSE ending in [DONE])."""
    request = response.request
    where = f"{request.method} {request.url.path} -> {response.status_code}: {response.text[:300]!r}"
    assert response.status_code < 500, where
    if response.status_code >= 400:
        error = response.json().get("error")
        assert isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"], where
        assert isinstance(error.get("type"), str), where
    elif response.headers.get("content-type", "").startswith("text/event-stream"):
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
        assert events and events[-1] == "[DONE]", where
        for event in events[:-1]:
            chunk = json.loads(event)
            assert "error" not in chunk or chunk["error"]["type"] != "server_error", where
    elif response.status_code == 200 and response.headers.get("content-type", "").startswith("application/json"):
        response.json()


# --- schemathesis: every operation in the app's OpenAPI schema ---------------------------------------

@SCHEMA.parametrize()
@settings(FUZZ, max_examples=_scaled(60))
def test_openapi_operations_never_fail_or_hang(case, gateway_url) -> None:
    start = time.perf_counter()
    response = case.call(base_url=gateway_url, headers=AUTH, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - start
    case.validate_response(response, checks=[not_a_server_error])
    assert elapsed < TIMEOUT_S, f"{case.method} {case.path} took {elapsed:.1f} s"
    if response.status_code >= 400:
        error = response.json().get("error")
        assert isinstance(error, dict) and error.get("message"), response.text[:300]


# --- hypothesis: raw bodies the schema cannot describe -------------------------------------------------

SPECIAL_NUMBERS = st.sampled_from([0, -1, 1, 2**31, 2**63, -(2**63), 10**30, -(10**300), 1e308, -1e308, 5e-324,
                                   math.nan, math.inf, -math.inf, 0.5, -0.0, 1e-9])
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | SPECIAL_NUMBERS
           | st.text(max_size=40) | st.sampled_from(["", "\x00", "\ud800", "🦀" * 10, "x" * 5000]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
SPEC_LIST = st.sampled_from(["sc", "esc", "asc", "cmc", "parallel_probe", "none", "cmc:beta=0.3", "asc:n=2",
                         "sc:n=100000", "cmc:beta=nan", "cmc:beta=", "sc:n=1:2", "::", "a,b", "tts-cmc",
                         "../x", "/dev/null", ".", "sc:" + "n=1," * 200, "asc:threshold=-inf"])
SPECS = SPEC_LIST | st.text(max_size=20)


def often(plausible: st.SearchStrategy, wild: st.SearchStrategy = JSON_VALUES) -> st.SearchStrategy:
    """Two times in three a plausible value, else anything: random requests stay valid often enough
    that whole episodes and streams run, not only the validation."""
    return st.integers(0, 2).flatmap(lambda i: wild if i == 2 else plausible)  # hypothesis favours 0


TTS = st.fixed_dictionaries({}, optional={
    "controller": often(SPECS), "arm": often(st.sampled_from(["a", "b", "c", ""])),
    "beta": often(st.floats(-0.5, 1.5) | SPECIAL_NUMBERS),
    "params": often(st.dictionaries(st.sampled_from(["n", "beta", "threshold", "max_branches", "k", "zz"]),
                                    st.integers(-2, 64) | SPECIAL_NUMBERS | JSON_VALUES, max_size=2)),
    "max_total_tokens": often(st.integers(-1, 500_000) | SPECIAL_NUMBERS),
    "max_branches": often(st.integers(-1, 40) | SPECIAL_NUMBERS),
    "segment_tokens": often(st.integers(-1, 5000) | SPECIAL_NUMBERS), "progress": often(st.booleans()),
    "unknown": JSON_VALUES})
FIELDS = {"model": often(st.sampled_from(["Qwen3-8B", "qwen3-8b", "tts-sc", "tts-cmc", "tts-none", "Qwen3-8B@esc",
                                          "Qwen3-8B@cmc:beta=0.2", "x@sc:n=0", "@", "", "Qwen3-4B"])),
          "max_tokens": often(st.integers(-2, 5000) | SPECIAL_NUMBERS),
          "max_completion_tokens": often(st.integers(-2, 5000) | SPECIAL_NUMBERS),
          "n": often(st.integers(-1, 3) | SPECIAL_NUMBERS), "seed": often(st.integers() | SPECIAL_NUMBERS),
          "temperature": often(st.floats(0, 2) | SPECIAL_NUMBERS), "top_p": often(st.floats(0, 1) | SPECIAL_NUMBERS),
          "stream": often(st.booleans()), "user": often(st.text(max_size=20)),
          "stream_options": often(st.fixed_dictionaries({"include_usage": often(st.booleans())})),
          "tts": often(TTS), "logprobs": JSON_VALUES, "stop": JSON_VALUES}
MESSAGES = often(st.sampled_from(QUESTIONS).map(lambda q: [{"role": "user", "content": q}]) | st.sampled_from(
    QUESTIONS).map(lambda q: [{"role": "system", "content": "be brief"},
                              {"role": "user", "content": [{"type": "text", "text": q}]}]), st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "system", "assistant"]) | JSON_VALUES},
                          optional={"content": JSON_VALUES | st.lists(st.fixed_dictionaries(
                              {"type": st.just("text") | JSON_VALUES, "text": JSON_VALUES}), max_size=3)}),
    max_size=3) | JSON_VALUES)
PROMPTS = often(st.sampled_from(QUESTIONS) | st.sampled_from(QUESTIONS).map(lambda q: [q]),
                st.lists(st.integers(), max_size=5) | JSON_VALUES)


def _bodies(question_field: str, questions: st.SearchStrategy) -> st.SearchStrategy[dict]:
    """A valid request (real question, seed) with up to four fields replaced or added (fewer changes keep
    a good share of the requests valid, so whole episodes and streams run, not just the validation)."""
    def build(question, seed, stream, changes):
        return {question_field: question, "seed": seed, "stream": stream, **changes}

    changes = st.lists(st.sampled_from(sorted(FIELDS)), max_size=4, unique=True).flatmap(
        lambda keys: st.fixed_dictionaries({key: FIELDS[key] for key in keys}))
    return st.builds(build, questions, st.integers(0, 1000), st.booleans(), changes)


CHAT = _bodies("messages", MESSAGES)
COMPLETION = _bodies("prompt", PROMPTS)
FEEDBACK = st.fixed_dictionaries({}, optional={"id": often(st.text(max_size=30)), "correct": often(st.booleans()),
                                               "gold": often(st.sampled_from(["70", "0", "", "x" * 3000])),
                                               "extra": JSON_VALUES})
HEADER_TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30)  # what HTTP can carry
HEADERS = st.fixed_dictionaries({}, optional={
    name: HEADER_TEXT | SPEC_LIST
    for name in ("X-TTS-Controller", "X-TTS-Arm", "X-User")})


def _send(client: httpx.Client, path: str, payload: object, headers: dict[str, str]) -> None:
    data = json.dumps(payload, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    check_reply(client.post(path, content=data, headers={"content-type": "application/json", **headers}))


@given(body=CHAT, headers=HEADERS)
@settings(FUZZ, max_examples=_scaled(600))
def test_chat_bodies(client, body, headers) -> None:
    _send(client, "/v1/chat/completions", body, headers)


@given(body=COMPLETION, headers=HEADERS)
@settings(FUZZ, max_examples=_scaled(300))
def test_completion_bodies(client, body, headers) -> None:
    _send(client, "/v1/completions", body, headers)


@pytest.fixture(scope="module")
def completion_ids(client) -> list[str]:
    """Ids of real completions, so feedback fuzzing reaches the label path (200, then 409 twice)."""
    ids = []
    for question in QUESTIONS[:4]:
        response = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": question}]})
        assert response.status_code == 200, response.text
        ids.append(response.json()["id"])
    return ids


@given(body=FEEDBACK, real=st.none() | st.integers(0, 3))
@settings(FUZZ, max_examples=_scaled(150))
def test_feedback_bodies(client, completion_ids, body, real) -> None:
    if real is not None:
        body = {**body, "id": completion_ids[real]}
    _send(client, "/v1/feedback", body, {})


NESTED = st.integers(1, 200_000).map(lambda depth: b"[" * depth + b"]" * depth) | st.integers(1, 50_000).map(
    lambda depth: b'{"a":' * depth + b"1" + b"}" * depth)
RAW = (st.binary(max_size=300) | NESTED | st.just(b'{"seed": ' + b"9" * 5000 + b"}")
       | JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode()))
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x", "application/json; charset=latin-1", ""])


@given(path=st.sampled_from(["/v1/chat/completions", "/v1/completions", "/v1/feedback"]), raw=RAW,
       content_type=CONTENT_TYPES)
@settings(FUZZ, max_examples=_scaled(300))
def test_raw_bytes_and_content_types(client, path, raw, content_type) -> None:
    check_reply(client.post(path, content=raw, headers={"content-type": content_type} if content_type else {}))


# --- regressions found by the fuzzing above -------------------------------------------------------------
# Each was a 500 (or a vague 400) before the fix named in its docstring.

def _raw(client: httpx.Client, path: str, data: bytes, content_type: str = "application/json") -> httpx.Response:
    response = client.post(path, content=data, headers={"content-type": content_type})
    check_reply(response)
    return response


@pytest.mark.parametrize("field, body", [
    ("user", {"user": "\ud800"}),  # hashed for the A/B arm: UnicodeEncodeError -> 500
    ("tts.arm", {"tts": {"arm": "x\udfff"}}),
    ("tts.params.\\ud800 (the key)", {"tts": {"controller": "sc", "params": {"\ud800": 1}}}),
    ("messages.0.content", {"messages": [{"role": "user", "content": "\ud83d"}]}),
])
def test_lone_surrogates_are_a_400_naming_the_field(client, field, body) -> None:
    """protocol.check_unicode: text that cannot be encoded as UTF-8 again is refused at the edge."""
    payload = {"messages": [{"role": "user", "content": QUESTIONS[0]}], **body}
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8", "surrogatepass")  # raw bytes, not \\u escapes
    for encoded in (data, json.dumps(payload).encode()):
        response = _raw(client, "/v1/chat/completions", encoded)
        error = response.json()["error"]
        assert response.status_code == 400 and error["param"] == field, response.text
        assert "not valid Unicode" in error["message"]


def test_feedback_with_a_lone_surrogate_is_a_400(client) -> None:
    response = _raw(client, "/v1/feedback", b'{"id": "x", "gold": "\\udc80"}')
    assert response.status_code == 400 and response.json()["error"]["param"] == "gold"


@pytest.mark.parametrize("data, cause", [
    (b'{"seed": ' + b"9" * 5000 + b"}", "4300 digits"),
    (b"[" * 5000 + b"]" * 5000, "recursion"),
])
def test_unparsable_json_names_the_cause(client, data, cause) -> None:
    """app.http_error: FastAPI's bare 'There was an error parsing the body' now says why."""
    error = _raw(client, "/v1/chat/completions", data).json()["error"]
    assert error["message"].startswith("request body could not be parsed as JSON") and cause in error["message"]


def test_wrong_content_type_is_named(client) -> None:
    body = json.dumps({"messages": [{"role": "user", "content": QUESTIONS[0]}]}).encode()
    response = _raw(client, "/v1/chat/completions", body, "text/plain")
    assert response.status_code == 400
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    assert "'text/plain'" in response.json()["error"]["message"]
