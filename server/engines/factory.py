"""`make_engine(config)`: the token engine a gateway config names (None for the replay engine).

HTTP engines (vllm, sglang) with several URLs in ``engine_urls`` become one `ReplicaPool`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import TokenEngine

if TYPE_CHECKING:
    from ..config import GatewayConfig

__all__ = ["make_engine"]


def make_engine(cfg: GatewayConfig) -> TokenEngine | None:
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
    engines = [http_engine(url, cfg.model, timeout_s=cfg.engine_timeout_s) for url in urls]
    if len(engines) == 1:
        return engines[0]
    from .pool import ReplicaPool

    return ReplicaPool(engines, health_interval_s=cfg.health_interval_s)
