"""The knowledge base in Chroma: embedded (`PersistentClient` in the work folder) by default, or a Chroma
server (`HttpClient`) named under `retrieval: server`, sent a bearer token read from the environment
variable `retrieval: token_env`. Vectors are computed here, by the configured embedder, in batches: the
store never embeds (nor downloads a model) itself. The collection is rebuilt only when its passages,
their corpus metadata, the chunking or the embedder change; that version reaches every context row."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import polars as pl

from medtrinity_core.knowledge.chunking import Chunker
from medtrinity_core.knowledge.embed import Embedder

if TYPE_CHECKING:  # the sources file imports the vocabulary: knowledge reads its types only
    from medtrinity_core.sources.schema import RetrievalConfig

BATCH = 256
METADATA = ("focus", "doc_id", "question", "corpus", "license", "citation", "cuis", "semantic_types")


class KnowledgeStoreError(RuntimeError):
    """The knowledge store cannot be reached or used as configured."""


def embedder_for(cfg: RetrievalConfig) -> Embedder:
    return Embedder(str(cfg.model_dir) if cfg.model_dir else None, cfg.query_prefix, cfg.passage_prefix)


def chunker_for(cfg: RetrievalConfig, embedder: Embedder) -> Chunker:
    """Passages cut by the embedder's tokenizer, within what the model reads (its `max_seq_length`, less
    the special tokens and the passage prefix)."""
    room = embedder.max_seq_length - 2 - (embedder.count_tokens([embedder.passage_prefix])[0] if embedder.passage_prefix else 0)
    if cfg.max_tokens > room:
        raise ValueError(f"retrieval.max_tokens {cfg.max_tokens} is more than {embedder.model_id} reads ({room} tokens after its special tokens and passage prefix)")
    return Chunker(embedder.count_tokens, cfg.max_tokens, cfg.overlap_tokens)


def kb_version(passages: pl.DataFrame, embedder: Embedder, cfg: RetrievalConfig) -> str:
    """Same passages (text and metadata), chunking and embedder, same version: re-runs do not re-embed."""
    h = hashlib.sha256(f"{embedder.signature}\x1f{cfg.max_tokens}\x1f{cfg.overlap_tokens}".encode())
    columns = ["passage_id", "text", *(m for m in METADATA if m in passages.columns)]
    for row in passages.select(columns).iter_rows():
        h.update("\x1e".join(str(v or "") for v in row).encode())
    return h.hexdigest()[:16]


def _token(cfg: RetrievalConfig) -> str | None:
    if not cfg.token_env:
        return None
    token = os.environ.get(cfg.token_env)
    if not token:
        raise KnowledgeStoreError(f"retrieval.token_env names {cfg.token_env}, which is not set in the environment")
    return token


def client(cfg: RetrievalConfig, chroma_path: Path):
    import chromadb

    settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
    if not cfg.server:
        chroma_path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(chroma_path), settings=settings)
    url = urlparse(cfg.server)
    token = _token(cfg)
    try:
        return chromadb.HttpClient(
            host=url.hostname, port=url.port or (443 if url.scheme == "https" else 80), ssl=url.scheme == "https",
            headers={"Authorization": f"Bearer {token}"} if token else None, settings=settings,
        )
    except Exception as exc:  # noqa: BLE001 - chromadb raises bare ValueError/ConnectionError variants on a failed heartbeat
        raise KnowledgeStoreError(f"Chroma server {cfg.server} refused or did not answer: {exc}") from None


def _metadata(row: dict) -> dict:
    return {m: str(row.get(m) or "") for m in METADATA}


def build(passages: pl.DataFrame, cfg: RetrievalConfig, chroma_path: Path, embedder: Embedder) -> tuple[str, bool]:
    """(version, rebuilt): the collection is replaced only when the version changed."""
    version = kb_version(passages, embedder, cfg)
    db = client(cfg, chroma_path)
    if cfg.collection in {c.name for c in db.list_collections()}:
        col = db.get_collection(cfg.collection, embedding_function=None)
        if (col.metadata or {}).get("kb_version") == version and col.count() == passages.height:
            return version, False
        db.delete_collection(cfg.collection)
    col = db.create_collection(cfg.collection, embedding_function=None, metadata={"kb_version": version, "model": embedder.model_id, "hnsw:space": "cosine"})
    for start in range(0, passages.height, BATCH):
        part = passages.slice(start, BATCH)
        col.add(ids=part["passage_id"].to_list(), documents=part["text"].to_list(),
                embeddings=embedder.embed_passages(part["text"].to_list()), metadatas=[_metadata(r) for r in part.iter_rows(named=True)])
    return version, True


def open_collection(cfg: RetrievalConfig, chroma_path: Path):
    """The collection, or None before the knowledge base is built."""
    db = client(cfg, chroma_path)
    if cfg.collection not in {c.name for c in db.list_collections()}:
        return None
    return db.get_collection(cfg.collection, embedding_function=None)


def version_of(collection) -> str:
    return (collection.metadata or {}).get("kb_version", "") if collection is not None else ""


def nearest(collection, vectors, n: int, embeddings: bool = False) -> list[list[dict]]:
    """The `n` nearest passages of each query vector, best first: `{passage_id, score, text, **metadata}`
    (and `embedding` when asked, for MMR). Scores are cosine similarities."""
    if collection is None or not len(vectors) or not collection.count():
        return [[] for _ in range(len(vectors))]
    include = ["documents", "metadatas", "distances"] + (["embeddings"] if embeddings else [])
    got = collection.query(query_embeddings=[list(map(float, v)) for v in vectors], n_results=min(n, collection.count()), include=include)
    out = []
    for q in range(len(vectors)):
        vecs = got["embeddings"][q] if embeddings else [None] * len(got["ids"][q])
        out.append([
            {"passage_id": pid, "score": round(1.0 - float(d), 4), "text": doc, **(meta or {}), **({"embedding": vec} if embeddings else {})}
            for pid, doc, meta, d, vec in zip(got["ids"][q], got["documents"][q], got["metadatas"][q], got["distances"][q], vecs)
        ])
    return out


def fetch_passages(collection, ids: list[str]) -> dict[str, dict]:
    """Passage text and metadata by id, for the generator to quote."""
    ids = sorted(set(ids))
    if collection is None or not ids:
        return {}
    got = collection.get(ids=ids, include=["documents", "metadatas"])
    return {pid: {"text": doc, **(meta or {})} for pid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])}
