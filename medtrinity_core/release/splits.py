"""Train / validation / test by patient: a patient's (or, where a source has no patient notion, an
item's) place is a hash of its key, so it never depends on what else is in the dataset — adding items
never moves an existing one, and no patient spans two splits."""

from __future__ import annotations

import hashlib
import math

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


def check_fractions(pairs) -> tuple[tuple[str, float], ...]:
    """Split fractions a person can mean: each name non-empty and named once, each fraction a finite
    number at least 0, together summing to 1 (ValueError naming what is wrong otherwise)."""
    pairs = tuple((str(name), value) for name, value in pairs)
    if not pairs:
        raise ValueError("split fractions: name at least one split, as NAME=FRACTION")
    for name, value in pairs:
        if not name.strip():
            raise ValueError(f"split fractions: {name}={value} has no split name (NAME=FRACTION)")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"split fractions: {name}={value} is not a finite number")
        if value < 0:
            raise ValueError(f"split fractions must be non-negative and sum to 1, not {name}={value:g}")
    names = [name.strip() for name, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"split fractions: split {', '.join(repeated)} is named more than once")
    total = math.fsum(v for _, v in pairs)
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be non-negative and sum to 1, not {total:g}")
    return tuple((name.strip(), float(value)) for name, value in pairs)


def parse_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """`train=0.8,validation=0.1,test=0.1` -> fractions summing to 1 (check_fractions)."""
    pairs = []
    for part in text.split(","):
        name, eq, value = part.partition("=")
        try:
            if not eq:
                raise ValueError
            pairs.append((name.strip(), float(value)))
        except ValueError:
            raise ValueError(f"split fractions: {part!r} is not NAME=FRACTION") from None
    return check_fractions(pairs)
