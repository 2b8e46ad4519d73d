"""The knowledge base in Chroma (embedded `PersistentClient` by default), versioned by content."""

from __future__ import annotations

import hashlib
from pathlib import Path

import chromadb
import polars as pl

from medtrinity_core.knowledge.embed import LocalEmbedder

COLLECTION = "medtrinity-knowledge"
BATCH = 256


def kb_version(passages: pl.DataFrame, model_id: str) -> str:
    """Same passages and model, same version: re-runs do not re-embed."""
    h = hashlib.sha256(model_id.encode())
    for pid, text in zip(passages["passage_id"].to_list(), passages["text"].to_list()):
        h.update(f"\x1f{pid}\x1e{text}".encode())
    return h.hexdigest()[:16]


def client(path: Path) -> chromadb.ClientAPI:
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=chromadb.Settings(anonymized_telemetry=False, allow_reset=False))


def build(passages: pl.DataFrame, chroma_path: Path, embedder: LocalEmbedder) -> tuple[str, bool]:
    """Each passage's corpus comes from its `corpus` column (`load_corpora` adds it)."""
    """(version, rebuilt): the collection is replaced only when the passages or the model changed."""
    version = kb_version(passages, embedder.model_id)
    db = client(chroma_path)
    existing = {c.name for c in db.list_collections()}
    if COLLECTION in existing:
        col = db.get_collection(COLLECTION, embedding_function=embedder)
        if (col.metadata or {}).get("kb_version") == version and col.count() == passages.height:
            return version, False
        db.delete_collection(COLLECTION)
    col = db.create_collection(COLLECTION, embedding_function=embedder, metadata={"kb_version": version, "model": embedder.model_id, "hnsw:space": "cosine"})
    for start in range(0, passages.height, BATCH):
        part = passages.slice(start, BATCH)
        col.add(
            ids=part["passage_id"].to_list(),
            documents=part["text"].to_list(),
            metadatas=[
                {"focus": f or "", "doc_id": d, "question": q or "", "corpus": c or ""}
                for f, d, q, c in zip(part["focus"].to_list(), part["doc_id"].to_list(), part["question"].to_list(),
                                      part["corpus"].to_list() if "corpus" in part.columns else [None] * part.height)
            ],
        )
    return version, True


def open_collection(chroma_path: Path, embedder: LocalEmbedder):
    db = client(chroma_path)
    if COLLECTION not in {c.name for c in db.list_collections()}:
        return None
    return db.get_collection(COLLECTION, embedding_function=embedder)


def fetch_passages(collection, ids: list[str]) -> dict[str, dict]:
    """Passage text and focus by id, for the generator to quote."""
    ids = sorted(set(ids))
    if collection is None or not ids:
        return {}
    got = collection.get(ids=ids, include=["documents", "metadatas"])
    return {pid: {"text": doc, "focus": (meta or {}).get("focus", "")} for pid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"])}
