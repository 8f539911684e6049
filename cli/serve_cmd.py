"""`autotts serve`: the OpenAI-compatible gateway (replay engine on bundled stores unless told otherwise)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from autotts.server.config import GatewayConfig


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="run the OpenAI-compatible TTS gateway",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve /v1/chat/completions, /v1/completions, /v1/models, /health and /metrics. Each "
                    "request is one test-time-scaling episode run by a controller against an engine. "
                    "Settings: defaults < --config file (YAML/TOML) < AUTOTTS_SERVE_<KEY> env vars < flags. "
                    "With no engine configured it serves the bundled replay stores (real Qwen3 trajectories "
                    "on AIME 2024/2025): ask one of their questions and get the recorded models' answer.",
        epilog="examples:\n"
               "  autotts serve                                           # replay engine, bundled stores\n"
               "  autotts serve --engine vllm --engine-url http://127.0.0.1:8000 --controller cmc:beta=0.3\n"
               "  autotts serve --engine vllm-inproc --model /tmp/tiny    # vLLM AsyncLLM in this process\n"
               "  autotts serve --config gateway.yaml --port 9000\n"
               "  AUTOTTS_ADMIN_TOKEN=... autotts serve --controllers-dir ./controllers --reload-interval 5\n"
               "      (artifact controllers run in kernel-sandboxed workers, one per episode)\n"
               "see docs/serving.md")
    p.add_argument("--config", metavar="FILE", help="settings file (.yaml/.yml/.toml/.json)")
    p.add_argument("--engine", choices=("replay", "vllm", "sglang", "vllm-inproc"), help="engine (default: replay)")
    p.add_argument("--engine-url", dest="engine_urls", action="append", metavar="URL",
                   help="engine server for --engine vllm|sglang; repeat for several replicas (each request "
                        "stays on one, new requests go to the least-loaded healthy one)")
    p.add_argument("--engine-api", choices=("auto", "completions", "generate"),
                   help="vllm: the route segments and probes decode through: generate = vLLM's token-in/"
                        "token-out /inference/v1/generate (`vllm serve --enable-scale-out`; vLLM does not "
                        "detokenise), completions = /v1/completions; auto (default) takes generate where the "
                        "server has it")
    p.add_argument("--model", metavar="NAME",
                   help="vllm: the engine's model name (default: its first); vllm-inproc: model dir or id; "
                        "replay: default model of the stores (e.g. Qwen3-8B)")
    p.add_argument("--store", dest="stores", action="append", metavar="PATH",
                   help="replay store file or directory; repeat for several (default: the bundled stores)")
    p.add_argument("--controller", metavar="SPEC", help="default controller (default: cmc:beta=0.5)")
    p.add_argument("--segment-tokens", type=int, metavar="N", help="live engines: tokens per segment Δ")
    p.add_argument("--branch-mode", choices=("segments", "stream"),
                   help="live engines: one engine call per segment (default) or one streamed call per branch")
    p.add_argument("--max-branches", type=int, metavar="N",
                   help="most branches one episode may open (default 128; a request's tts.max_branches may "
                        "lower it): the controller's branches_available starts here. Serving what a replay "
                        "store predicted, set it to the store's traces per question so both offer the same width")
    p.add_argument("--controllers-dir", metavar="DIR",
                   help="artifacts (NAME/ or NAME.json, each served as alias NAME) and an optional "
                        "controllers.yaml (controller, aliases, arms); reloaded by POST /admin/reload")
    p.add_argument("--allow-artifact-code", dest="allow_code", action="store_true", default=None,
                   help="trust artifact code: run it in the gateway's own process instead of sandboxed workers "
                        "(only for code you wrote; it could read every request)")
    p.add_argument("--no-sandbox", dest="allow_unsandboxed", action="store_true", default=None,
                   help="where no kernel sandbox works here, run artifact workers as plain subprocesses instead "
                        "of refusing to serve artifacts (see docs/security.md)")
    p.add_argument("--reload-interval", dest="reload_interval_s", type=float, metavar="S",
                   help="poll the config file and --controllers-dir every S seconds and reload on a change")
    p.add_argument("--admin-token", metavar="TOKEN",
                   help="bearer token for /admin/* (default: $AUTOTTS_ADMIN_TOKEN; the env var keeps it out "
                        "of the process list)")
    p.add_argument("--api-key", metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1/* (also $AUTOTTS_SERVE_API_KEY)")
    p.add_argument("--capture-dir", metavar="DIR",
                   help="append served episodes to replay stores under DIR (see docs/capture.md; off by default)")
    p.add_argument("--capture-rate", type=float, metavar="P", help="fraction of requests captured (0..1)")
    p.add_argument("--capture-redact", action="store_true", default=None,
                   help="store a hash of each prompt instead of its text")
    p.add_argument("--host", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from autotts.controllers.errors import AutoTTSError

    try:
        import uvicorn
        from autotts.server.app import build_app
    except ImportError as exc:
        raise AutoTTSError(f"serve needs the serve extra (pip install 'autotts[serve]'): {exc}") from None
    config = gateway_config(args)
    app = build_app(config)
    print(f"autotts gateway: engine {config.engine}, default controller {app.state.gateway.selector.default}, "
          f"http://{config.host}:{config.port}/v1", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level)
    return 0


def gateway_config(args: argparse.Namespace) -> GatewayConfig:
    """The gateway's settings: defaults < --config file < env vars < these flags (checked by GatewayConfig)."""
    from autotts.server.config import GatewayConfig

    urls = args.engine_urls or []
    overrides = {"engine": args.engine, "engine_url": urls[0] if len(urls) == 1 else None,
                 "engine_urls": urls if len(urls) > 1 else None, "model": args.model,
                 "stores": args.stores, "controller": args.controller, "segment_tokens": args.segment_tokens,
                 "branch_mode": args.branch_mode, "engine_api": args.engine_api,
                 "host": args.host, "port": args.port, "controllers_dir": args.controllers_dir,
                 "allow_code": args.allow_code, "allow_unsandboxed": args.allow_unsandboxed,
                 "reload_interval_s": args.reload_interval_s,
                 "admin_token": args.admin_token, "api_key": args.api_key, "capture_dir": args.capture_dir,
                 "capture_rate": args.capture_rate, "capture_redact": args.capture_redact,
                 "max_branches": args.max_branches}
    return GatewayConfig.load(args.config, overrides=overrides)
