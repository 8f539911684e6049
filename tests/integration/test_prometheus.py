"""A real Prometheus server (Debian's `prometheus` package) scrapes the gateway's /metrics, and PromQL
returns exactly the tokens of the requests sent. Skipped without the binary, except under CI=true (fails).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'autotts[serve]'")

import httpx
from autotts.offline.evaluate import bundled_data_dir
from autotts.offline.store import load_store
from autotts.server.app import build_app
from autotts.server.background import BackgroundServer, free_port
from autotts.server.config import GatewayConfig

STORE = bundled_data_dir() / "Qwen3-4B" / "aime24.parquet"


def _prometheus() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        message = "the prometheus binary is missing (apt-get install prometheus; scripts/install-dev.sh does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " under CI=true")
        pytest.skip(message)
    return binary


def _query(url: str, promql: str) -> list[dict]:
    data = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=10).json()
    assert data["status"] == "success", data
    return data["data"]["result"]


def test_prometheus_scrapes_the_tokens_of_the_requests_sent(tmp_path) -> None:
    binary = _prometheus()
    questions = load_store(STORE).questions
    sent: dict[str, int] = {}
    per_request: list[int] = []
    app = build_app(GatewayConfig.load(overrides={"stores": [str(STORE)]}))
    with BackgroundServer(app) as gateway:
        for i, spec in enumerate(["cmc", "esc", "cmc", "sc"]):
            body = {"seed": i, "messages": [{"role": "user", "content": questions[i]}], "tts": {"controller": spec}}
            response = httpx.post(gateway + "/v1/chat/completions", json=body, timeout=60)
            assert response.status_code == 200
            sent[spec] = sent.get(spec, 0) + response.json()["usage"]["completion_tokens"]
            per_request.append(response.json()["usage"]["completion_tokens"])
        assert httpx.post(gateway + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "?"}]},
                          timeout=60).status_code == 400
        port = free_port()
        (tmp_path / "prometheus.yml").write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n  - job_name: autotts\n    metrics_path: /metrics\n"
            f"    static_configs:\n      - targets: ['{gateway.removeprefix('http://')}']\n")
        proc = subprocess.Popen([binary, f"--config.file={tmp_path / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            result: list[dict] = []
            while time.monotonic() < deadline:
                try:
                    result = _query(url, 'sum by (controller) (autotts_tokens_total{kind="decode"})')
                except (httpx.HTTPError, ValueError):
                    result = []
                if len(result) == len(sent):
                    break
                time.sleep(0.5)
            got = {r["metric"]["controller"]: int(float(r["value"][1])) for r in result}
            assert got == sent
            total = _query(url, 'sum(autotts_tokens_total{kind="decode",model="Qwen3-4B"})')
            assert int(float(total[0]["value"][1])) == sum(sent.values())
            ok = _query(url, 'sum(autotts_requests_total{status="200"})')
            bad = _query(url, 'sum(autotts_requests_total{status="400"})')
            assert (float(ok[0]["value"][1]), float(bad[0]["value"][1])) == (4.0, 1.0)
            # what `autotts ab report` reads through Prometheus for its token test: count, sum, sum of squares
            for series, want in (("autotts_request_completion_tokens_count", len(per_request)),
                                 ("autotts_request_completion_tokens_sum", sum(per_request)),
                                 ("autotts_request_completion_tokens_squares_total", sum(t * t for t in per_request))):
                assert float(_query(url, f"sum({series})")[0]["value"][1]) == want, series
        finally:
            proc.terminate()
            proc.wait(timeout=30)
