"""Deterministic ids and content hashes: re-running a partition must give the same ids and bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

_SEP = "\x1f"


def stable_id(prefix: str, *parts: object) -> str:
    """A short id that depends only on its parts (source, relative path, slice, ROI index...)."""
    digest = hashlib.sha256(_SEP.join(str(p) for p in parts).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:20]}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def salted_hash(value: str, salt: str) -> str:
    """Hide a patient-identifying path while keeping equal paths equal within one deployment."""
    return hashlib.sha256(f"{salt}{_SEP}{value}".encode()).hexdigest()[:32]
