"""Faithfulness: a description's claims held to the facts its generator was given, read as clinical
text (`scorer`: the two numbers and the contradiction types; `reader`: negation and uncertainty;
`lexicon`: the words, all from the vocabulary file; `captions`: the `medtrinity score` command's JSON
Lines). The scorer and spaCy load when first used: importing this package costs nothing."""

from __future__ import annotations

from hashlib import sha256
from pathlib import Path


def _digest() -> str:
    """A hash of the scorer's code and the bundled vocabulary it reads text with: any change to either is a new scorer."""
    here = Path(__file__).parent
    h = sha256()
    for path in (*sorted(here.glob("*.py")), here.parents[1] / "knowledge" / "vocabulary.yaml"):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:8]


# Enters the descriptions stage's code version: a new scorer rescores every row (the generation cache holds).
SCORER_VERSION = f"claims-v2+{_digest()}"
TYPES = ("modality", "region", "side", "size", "count", "absent_finding", "phantom_finding", "appearance")

__all__ = ["SCORER_VERSION", "TYPES", "Score", "annotation_suspects", "score"]


def __getattr__(name: str):
    if name in ("Score", "annotation_suspects", "score"):
        from medtrinity_core.describe.faithfulness import scorer

        return getattr(scorer, name)
    raise AttributeError(name)
