"""autotts.server: the OpenAI-compatible gateway that runs controllers against live engines.

Layers, outside in: `app` (FastAPI app, error handlers) → `routes` (thin handlers) → `gateway` (per-request
preparation, metrics) → `executor` (drives any controller over a branch backend with the replay
environment's semantics) → `replay` or `autotts.engines.backends` (what one action does to one branch) →
`autotts.engines` (token engines: vLLM over HTTP, SGLang, in-process vLLM, fakes). See docs/serving.md and
docs/architecture.md. `tiny_model` builds a tiny model real vLLM can serve. Heavy dependencies (fastapi,
httpx, vllm, torch) are imported by the modules that need them, not here.
"""
