"""The gateway Dockerfile, checked by reading it (no Docker daemon in CI): non-root, health-checked, and every
path it copies exists in the repository and is not excluded by .dockerignore."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_runs_as_non_root_with_a_healthcheck() -> None:
    ins = instructions()
    assert ins[0] == ("FROM", "python:3.11-slim")
    users = [rest for word, rest in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    last_user = max(i for i, (word, _) in enumerate(ins) if word == "USER")
    assert last_user > max(i for i, (word, _) in enumerate(ins) if word == "RUN")  # nothing runs as root after
    health = [rest for word, rest in ins if word == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0] and "CMD" in health[0]
    assert ("EXPOSE", "8000") in ins
    entry = json.loads(next(rest for word, rest in ins if word == "ENTRYPOINT"))
    assert entry[:2] == ["autotts", "serve"] and entry[entry.index("--host") + 1] == "0.0.0.0"
    assert any(word == "RUN" and '".[serve]"' in rest for word, rest in ins)


def test_copied_paths_exist_and_are_not_dockerignored() -> None:
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    copied = []
    for word, rest in instructions():
        if word == "COPY":
            *sources, _dest = shlex.split(rest)
            copied += [s for s in sources if not s.startswith("--")]
    assert {"pyproject.toml", "server/", "controllers/", "cli/"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") not in ignored, f"{source} is copied but listed in .dockerignore"
    # the package dirs pyproject maps must all be copied, or `pip install .` fails in the build
    import tomllib
    dirs = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values())
    assert {d + "/" for d in dirs} <= set(copied)
