"""autotts.server: the OpenAI-compatible gateway that runs controllers against live engines.

Layers, outside in: `app` (FastAPI app, error mapping) → `routes` (thin handlers) → `gateway` (per-request
preparation, metrics) → `executor` (drives any controller over a branch backend with the replay
environment's semantics) → `backends` / `replay` (what one action does to one branch) → `engines` (token
engines: vLLM over HTTP, in-process vLLM, a fake). See docs/serving.md. `tiny_model` builds a tiny model
real vLLM can serve. Heavy dependencies (fastapi, httpx, vllm, torch) are imported by the modules that
need them, not here.
"""
