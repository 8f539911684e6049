"""Explorers: who proposes controller code. `local` (evolutionary search, no model), `anthropic`
(Messages API with tool use) and `openai` (any OpenAI-compatible chat endpoint with tools), all
behind `base.Explorer`. The LLM SDKs are imported only when their explorer runs."""
