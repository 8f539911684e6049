"""`make_engine(settings)`: the token engine a configuration names (None for the replay engine).

HTTP engines (vllm, sglang) with several URLs in ``engine_urls`` become one `ReplicaPool`. `settings` is
anything with the engine fields of the gateway's config (`autotts.server.config.GatewayConfig`, or the
one `autotts collect` builds); engines never import the gateway.
"""

from __future__ import annotations

from typing import Any, Protocol

from .base import TokenEngine

__all__ = ["EngineSettings", "make_engine"]


class EngineSettings(Protocol):
    """The fields of a configuration that choose and build an engine."""

    engine: str  # replay | vllm | sglang | vllm-inproc
    engine_url: str | None
    engine_urls: list[str]
    model: str | None
    served_model_name: str | None
    engine_args: dict[str, Any]
    engine_timeout_s: float
    health_interval_s: float
    engine_keepalive_s: float
    engine_api: str  # vllm: auto | completions | generate


def make_engine(cfg: EngineSettings) -> TokenEngine | None:
    if cfg.engine == "replay":
        return None
    if cfg.engine == "vllm-inproc":
        from .vllm_inproc import VLLMInprocEngine

        return VLLMInprocEngine(cfg.model or "", served_name=cfg.served_model_name, **cfg.engine_args)
    if cfg.engine == "sglang":
        from .sglang_http import SGLangHTTPEngine as http_engine
    else:
        from .vllm_http import VLLMHTTPEngine as http_engine
    urls = cfg.engine_urls or [cfg.engine_url or ""]
    extra = {"api": cfg.engine_api} if cfg.engine == "vllm" else {}
    engines = [http_engine(url, cfg.model, timeout_s=cfg.engine_timeout_s, keepalive_s=cfg.engine_keepalive_s,
                           **extra) for url in urls]
    if len(engines) == 1:
        return engines[0]
    from .pool import ReplicaPool

    return ReplicaPool(engines, health_interval_s=cfg.health_interval_s)
