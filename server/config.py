"""Gateway settings: one typed object, read once from a YAML/TOML file, env vars and CLI flags.

Precedence (later wins): defaults < config file < ``AUTOTTS_SERVE_<KEY>`` environment variables <
command-line flags. Every value is type-checked on the way in and a bad one is reported with its
key, its source and the value, e.g. ``config.yaml: max_branches must be an int >= 1, got 'many'``.

>>> GatewayConfig.load(overrides={"engine": "replay", "max_branches": "8"}).max_branches
8
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from .errors import ConfigError

__all__ = ["ENGINES", "ConfigError", "GatewayConfig"]

ENGINES = ("replay", "vllm", "sglang", "vllm-inproc")
ENGINE_APIS = ("auto", "completions", "generate")  # vllm's decoding routes (engines.vllm_http.APIS)
ENV_PREFIX = "AUTOTTS_SERVE_"
ADMIN_TOKEN_ENV = "AUTOTTS_ADMIN_TOKEN"  # admin_token's default (the Helm chart sets it from a Secret)

DEFAULT_ALIASES = {"tts-sc": "sc", "tts-asc": "asc", "tts-esc": "esc", "tts-parallel-probe": "parallel_probe",
                   "tts-cmc": "cmc:beta=0.5", "tts-none": "none"}


@dataclass
class GatewayConfig:
    # engine
    engine: str = "replay"
    engine_url: str | None = None  # vllm / sglang: the engine's HTTP server
    engine_urls: list[str] = field(default_factory=list)  # several replicas of that engine (replaces engine_url)
    health_interval_s: float = 5.0  # how often a replica taken out after a failure is re-checked
    #: idle pooled connections to the engine close after this; keep it below the engine server's own
    #: keep-alive timeout (uvicorn's and vLLM's default: 5 s) so the engine never closes one being reused
    engine_keepalive_s: float = 2.0
    #: vllm: the route that decodes: auto (vLLM's token-in/token-out /inference/v1/generate where the server
    #: has it, i.e. `vllm serve --enable-scale-out`; else /v1/completions) | completions | generate
    engine_api: str = "auto"
    model: str | None = None  # vllm: engine's model name; vllm-inproc: model dir; replay: default model
    served_model_name: str | None = None  # the name clients send (default: `model`)
    stores: list[str] = field(default_factory=list)  # replay stores (default: the bundled ones)
    engine_args: dict[str, Any] = field(default_factory=dict)  # vllm-inproc AsyncEngineArgs extras
    # controllers
    controller: str = "cmc:beta=0.5"
    aliases: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    allow_code: bool = False  # trust artifact code: run it in the gateway's own process, unsandboxed
    check_artifacts: bool = True  # artifact controllers must pass check_controller before they serve
    allow_unsandboxed: bool = False  # where no kernel sandbox works, run artifact workers as plain subprocesses
    sandbox_spares: int = 2  # pre-started workers per served artifact (each episode takes a fresh one)
    sandbox_step_timeout_s: float = 5.0  # CPU seconds one step of a sandboxed controller may take
    max_body_bytes: int = 8 << 20  # larger request bodies get 413 before they are parsed
    # live decoding
    segment_tokens: int = 256
    probe_suffix: str = "\n</think>\n\n\\boxed{"
    probe_max_tokens: int = 8
    #: live engines, calls of one branch that may run together: off (one after the other) | probe (a probe
    #: with the next segment of the same action) | ahead (also the next segment before the controller
    #: decides; a prune aborts it, unused tokens count in usage as overshoot)
    overlap: str = "probe"
    #: live engines, how a branch runs: segments (one engine call per segment) | stream (one streamed call
    #: per branch, read segment by segment; prunes abort it; engines that stream token IDs: vllm)
    branch_mode: str = "segments"
    #: branch_mode stream: streams of the next N branch ids started before the controller opens them (a
    #: Branch then finds its first segment decoding already); never-opened spares' tokens are overshoot
    stream_spares: int = 0
    temperature: float | None = 0.6
    top_p: float | None = 0.95
    ignore_eos: bool = False
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    default_max_tokens: int = 8192  # per-branch length when the request sets no max_tokens
    kappa_probe: int = 0  # replay: tokens charged per revealed probe
    # answers and votes (docs/serving.md, "Answers, votes and the response"); requests and arms may override
    extractor: Any = "boxed"  # boxed | number | choice | regex | json, or a mapping {kind, pattern, field, suffix}
    #: exact | normalized | math[:tolerance=X] | semantic[:threshold=X] | judge; None: the answers' own (live:
    #: math for boxed and number answers, normalized for the others; replay: what the store records)
    aggregator: str | None = None
    response: str = "full"  # full: the winning branch's own text | answer: a short answer sentence
    embeddings_url: str | None = None  # semantic votes: an OpenAI-compatible /v1/embeddings server (None: local model)
    embeddings_model: str | None = None
    judge_max_tokens: int = 32  # judge votes: tokens of the judge's reply
    # caps
    max_tokens: int = 32768  # largest per-branch max_tokens a request may ask for
    max_total_tokens: int = 5_000_000  # episode token cap (decode + probe); requests may lower it
    max_branches: int = 128
    max_n: int = 4
    max_concurrent: int = 64  # episodes in flight; more → 429
    request_timeout_s: float = 600.0
    engine_timeout_s: float = 120.0
    controller_in_thread: bool = True  # non-built-in controllers step in a worker thread
    # A/B arms and feedback (docs/serving.md, "A/B arms")
    arms: list[dict[str, Any]] = field(default_factory=list)  # [{name, controller, beta, weight}]; [] = no A/B
    ab_salt: str = "autotts-ab"  # hash salt of the sticky assignment (change it to reshuffle users)
    feedback_capacity: int = 100_000  # completions remembered for POST /v1/feedback (LRU)
    feedback_mode: str = "math"  # how a `gold` label is compared: math | exact
    fallback: str = "plain"  # controller failed / hit the cap without an answer: plain | error
    # controller lifecycle (docs/serving.md, "Controllers in production")
    controllers_dir: str | None = None  # artifacts + arms/aliases files, loaded at start and on reload
    reload_interval_s: float = 0.0  # > 0: poll controllers_dir and the config file for changes
    admin_token: str | None = None  # bearer token for /admin/* (also read from $AUTOTTS_ADMIN_TOKEN)
    api_key: str | None = None  # when set, /v1/* need `Authorization: Bearer <api_key>` (like vLLM's --api-key)
    # traffic capture (docs/capture.md): off unless capture_dir is set and capture_rate > 0
    capture_dir: str | None = None
    capture_rate: float = 0.0  # fraction of requests captured
    capture_redact: bool = False  # store a hash of the prompt instead of its text
    capture_rows_per_file: int = 1000  # rotate the Parquet file after this many captured episodes
    # server
    host: str = "127.0.0.1"
    port: int = 8000

    def __post_init__(self) -> None:
        self._check("config")

    @property
    def public_model(self) -> str | None:
        return self.served_model_name or self.model

    @classmethod
    def load(cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
             overrides: Mapping[str, Any] | None = None) -> GatewayConfig:
        """Defaults, then the file at `path`, then env vars, then `overrides` (e.g. CLI flags)."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        if path is not None:
            for key, value in _read_file(Path(path)).items():
                values[key], sources[key] = value, str(path)
        env = os.environ if env is None else env
        for name, value in env.items():
            if name.startswith(ENV_PREFIX):
                key = name[len(ENV_PREFIX):].lower()
                values[key], sources[key] = value, f"${name}"
        if values.get("admin_token") is None and env.get(ADMIN_TOKEN_ENV):  # the Helm chart's Secret
            values["admin_token"], sources["admin_token"] = env[ADMIN_TOKEN_ENV], f"${ADMIN_TOKEN_ENV}"
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key], sources[key] = value, "command line"
        known = {f.name for f in fields(cls)}
        for key in values:
            if key not in known:
                raise ConfigError(f"{sources[key]}: unknown setting {key!r}; known: {', '.join(sorted(known))}")
        hints = get_type_hints(cls)
        typed = {key: _coerce(key, value, hints[key], sources[key]) for key, value in values.items()}
        config = cls.__new__(cls)
        for f in fields(cls):
            if f.name in typed:
                setattr(config, f.name, typed[f.name])
            else:
                setattr(config, f.name, f.default if f.default_factory is MISSING else f.default_factory())
        config._check("settings", sources)
        # how it was read, so a controller reload (server/lifecycle.py) can read the same sources again
        config._origin = (path, {k: v for k, v in env.items() if k.startswith("AUTOTTS_")}, dict(overrides or {}))
        return config

    @property
    def config_file(self) -> Path | None:
        """The settings file this config was loaded from, if any."""
        origin = getattr(self, "_origin", None)
        return None if origin is None or origin[0] is None else Path(origin[0])

    def reread(self) -> GatewayConfig:
        """The settings read again from the same file, env values and overrides (a copy if not `load`ed)."""
        origin = getattr(self, "_origin", None)
        if origin is None:
            return replace(self)
        path, env, overrides = origin
        return GatewayConfig.load(path, env=env, overrides=overrides)

    def _check(self, where: str, sources: Mapping[str, str] | None = None) -> None:
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"{(sources or {}).get(key, where)}: {key} {message}, got {getattr(self, key)!r}")

        if self.engine not in ENGINES:
            fail("engine", f"must be one of {', '.join(ENGINES)}")
        if self.engine_api not in ENGINE_APIS:
            fail("engine_api", f"must be one of {', '.join(ENGINE_APIS)}")
        if self.engine in ("vllm", "sglang") and not (self.engine_url or self.engine_urls):
            raise ConfigError(f"{where}: engine {self.engine!r} needs engine_url (e.g. http://127.0.0.1:8000) "
                              "or engine_urls")
        if self.engine == "vllm-inproc" and not self.model:
            raise ConfigError(f"{where}: engine 'vllm-inproc' needs model (a model directory or id)")
        for key in ("segment_tokens", "probe_max_tokens", "default_max_tokens", "max_tokens", "max_total_tokens",
                    "max_branches", "max_n", "max_concurrent", "max_body_bytes"):
            if getattr(self, key) < 1:
                fail(key, "must be >= 1")
        for key in ("request_timeout_s", "engine_timeout_s", "health_interval_s", "sandbox_step_timeout_s",
                    "engine_keepalive_s"):
            if getattr(self, key) <= 0:
                fail(key, "must be > 0")
        if any(not u.startswith(("http://", "https://")) for u in self.engine_urls):
            fail("engine_urls", "must be http:// or https:// URLs")
        if len({u.rstrip("/") for u in self.engine_urls}) < len(self.engine_urls):
            fail("engine_urls", "must not name one server twice")
        if self.kappa_probe < 0:
            fail("kappa_probe", "must be >= 0")
        if self.sandbox_spares < 0:
            fail("sandbox_spares", "must be >= 0")
        if not 0 < self.port < 65536:
            fail("port", "must be a TCP port (1..65535)")
        if self.default_max_tokens > self.max_tokens:
            fail("default_max_tokens", f"must be <= max_tokens ({self.max_tokens})")
        if self.feedback_capacity < 1:
            fail("feedback_capacity", "must be >= 1")
        if self.feedback_mode not in ("math", "exact"):
            fail("feedback_mode", "must be math or exact")
        if self.overlap not in ("off", "probe", "ahead"):
            fail("overlap", "must be off, probe or ahead")
        if self.branch_mode not in ("segments", "stream"):
            fail("branch_mode", "must be segments or stream")
        if self.stream_spares < 0:
            fail("stream_spares", "must be >= 0")
        if self.fallback not in ("plain", "error"):
            fail("fallback", "must be plain or error")
        if self.reload_interval_s < 0:
            fail("reload_interval_s", "must be >= 0 (0 = no polling)")
        if not 0 <= self.capture_rate <= 1:
            fail("capture_rate", "must be a fraction in [0, 1] (0 = capture off)")
        if self.capture_rows_per_file < 1:
            fail("capture_rows_per_file", "must be >= 1")
        if self.capture_dir is not None and self.capture_rate > 0:
            problem = _unwritable_dir(Path(self.capture_dir))
            if problem:
                fail("capture_dir", problem)
        if self.controllers_dir is not None and not Path(self.controllers_dir).is_dir():
            fail("controllers_dir", "must be an existing directory")
        for key in ("admin_token", "api_key"):  # never echo a secret back in an error
            token = getattr(self, key)
            if token is not None and (not token or token != token.strip() or any(c.isspace() for c in token)):
                raise ConfigError(f"{(sources or {}).get(key, where)}: {key} must be a non-empty string without "
                                  "spaces (the value is not shown)")
        from .arms import check_vote_options, parse_arms

        try:
            parse_arms(self.arms)
        except ValueError as exc:
            raise ConfigError(f"{(sources or {}).get('arms', where)}: {exc}") from None
        for key in ("extractor", "aggregator", "response"):
            try:
                check_vote_options({key: getattr(self, key)}, "")
            except ValueError as exc:
                raise ConfigError(f"{(sources or {}).get(key, where)}: {exc}") from None


def _unwritable_dir(path: Path) -> str | None:
    """Why the gateway could not create or write directory `path` (None: it can)."""
    if path.exists():
        if not path.is_dir():
            return "must be a directory (it is a file)"
        return None if os.access(path, os.W_OK | os.X_OK) else "must be a writable directory"
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created ({parent} is not a writable directory)"
    return None


def _read_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config file must be .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:  # the parsers' errors carry line numbers: pass them on in one line
        raise ConfigError(f"{path}: cannot parse: {' '.join(str(exc).split())}") from None
    data = data.get("serve", data) if isinstance(data, dict) else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    return data


def _coerce(key: str, value: Any, hint: Any, source: str) -> Any:
    """`value` (from YAML/TOML or a string from env/CLI) as type `hint`, or a ConfigError naming it."""
    args = get_args(hint)
    optional = (get_origin(hint) in (Union, types.UnionType)) and type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("", "none", "null"))):
        return None
    origin = get_origin(base) or base
    try:
        if origin is bool:
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            if isinstance(value, bool):
                return value
            raise ValueError
        if origin is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if origin is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if origin is str:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if origin is list:
            of_dicts = get_origin((get_args(base) or (None,))[0]) is dict
            if isinstance(value, str):
                value = json.loads(value) if of_dicts else [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError
            return list(value) if of_dicts else [str(v) for v in value]
        if origin is dict:
            if isinstance(value, str):
                value = json.loads(value)
            if not isinstance(value, dict):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise ConfigError(f"{source}: {key} must be {_name(hint)}, got {value!r}")


def _name(hint: Any) -> str:
    optional = get_origin(hint) in (Union, types.UnionType) and type(None) in get_args(hint)
    base = next(a for a in get_args(hint) if a is not type(None)) if optional else hint
    origin = get_origin(base) or base
    name = {int: "an int", float: "a number", bool: "true or false", str: "a string", list: "a list",
            dict: "a mapping (JSON object)"}.get(origin, str(base))
    return name + (" or null" if optional else "")
