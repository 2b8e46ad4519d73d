"""Faithfulness: a description's claims held to the facts its generator was given, read as clinical
text (`scorer`: the two numbers and the contradiction types; `reader`: negation and uncertainty;
`lexicon`: the words, all from the vocabulary file; `captions`: the `medtrinity score` command's JSON
Lines). The scorer and spaCy load when first used: importing this package costs nothing."""

from __future__ import annotations

SCORER_VERSION = "claims-v2"  # enters the descriptions stage's code version: a new scorer rescores every row (the generation cache holds)
TYPES = ("modality", "region", "side", "size", "count", "absent_finding", "phantom_finding", "appearance")

__all__ = ["SCORER_VERSION", "TYPES", "Score", "annotation_suspects", "score"]


def __getattr__(name: str):
    if name in ("Score", "annotation_suspects", "score"):
        from medtrinity_core.describe.faithfulness import scorer

        return getattr(scorer, name)
    raise AttributeError(name)
