"""Train / validation / test by patient: a patient's (or, where a source has no patient notion, an
item's) place is a hash of its key, so it never depends on what else is in the dataset — adding items
never moves an existing one, and no patient spans two splits."""

from __future__ import annotations

import hashlib

DEFAULT_FRACTIONS = (("train", 0.8), ("validation", 0.1), ("test", 0.1))


def split_key(provenance: dict) -> str:
    return f"patient:{provenance['patient_key']}" if provenance.get("patient_key") else f"item:{provenance['source']}:{provenance['item_id']}"


def split_of(key: str, fractions: tuple[tuple[str, float], ...] = DEFAULT_FRACTIONS) -> str:
    u = int(hashlib.sha256(key.encode()).hexdigest()[:15], 16) / 16**15
    edge = 0.0
    for name, share in fractions:
        edge += share
        if u < edge:
            return name
    return fractions[-1][0]


def parse_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """`train=0.8,validation=0.1,test=0.1` -> fractions summing to 1."""
    pairs = []
    for part in text.split(","):
        name, _, value = part.partition("=")
        try:
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f"split fractions: {part!r} is not NAME=FRACTION") from None
    if abs(sum(v for _, v in pairs) - 1.0) > 1e-6 or any(v < 0 for _, v in pairs):
        raise ValueError(f"split fractions must be non-negative and sum to 1, not {sum(v for _, v in pairs):g}")
    return tuple(pairs)
