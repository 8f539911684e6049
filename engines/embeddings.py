"""Sentence embeddings from an OpenAI-compatible ``/v1/embeddings`` server (vLLM with a pooling model,
or any other), for the semantic aggregator; transport failures map onto the engine errors."""

from __future__ import annotations

from typing import Any

from .errors import EngineGarbage
from .http_common import HTTPEngine

__all__ = ["HTTPEmbeddings"]


class HTTPEmbeddings(HTTPEngine):
    """``POST {url}/v1/embeddings`` with ``{"model", "input": [...]}``; one vector per input, in order."""

    name = "embeddings"

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        body: dict[str, Any] = {"input": list(texts)}
        if self.model:
            body["model"] = self.model
        data = await self._call("POST", "/v1/embeddings", body)
        try:
            rows = sorted(data["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as exc:
            raise EngineGarbage(f"{self.url}/v1/embeddings: unexpected response ({exc!r})") from exc
        if len(vectors) != len(texts):
            raise EngineGarbage(f"{self.url}/v1/embeddings: {len(vectors)} vectors for {len(texts)} inputs")
        return vectors
