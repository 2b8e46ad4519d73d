"""Checks over stage manifests. Each returns (passed, metadata); the orchestrator decides severity."""

from __future__ import annotations

from collections import Counter

import polars as pl


def quarantine_share(quarantined: int, items: int, max_share: float) -> tuple[bool, dict]:
    share = quarantined / items if items else 0.0
    return share <= max_share, {"quarantined": quarantined, "items": items, "share": round(share, 4), "max_share": max_share}


def faithfulness(descriptions: pl.DataFrame, min_mean_completeness: float, max_contradiction_rate: float) -> tuple[bool, dict]:
    """A partition passes when the share of descriptions stating a contradiction is at most
    `max_contradiction_rate` and their mean completeness reaches `min_mean_completeness`; the metadata
    counts contradictions by type and names the worst rows (contradicted first, then least complete)."""
    if descriptions.is_empty():
        return True, {"descriptions": 0}
    completeness = float(descriptions["completeness"].mean())
    contradicted = descriptions.filter(pl.col("contradictions").list.len() > 0).height
    rate = contradicted / descriptions.height
    types = Counter(c["type"] for cs in descriptions["contradictions"].to_list() for c in cs or [])
    worst = descriptions.with_columns(n=pl.col("contradictions").list.len()).sort(["n", "completeness", "image_id"], descending=[True, False, False]).head(5)
    return completeness >= min_mean_completeness and rate <= max_contradiction_rate, {
        "descriptions": descriptions.height, "mean_faithfulness": round(float(descriptions["faithfulness"].mean()), 4),
        "mean_completeness": round(completeness, 4), "min_mean_completeness": min_mean_completeness,
        "contradiction_rate": round(rate, 4), "max_contradiction_rate": max_contradiction_rate, "contradictions_by_type": dict(sorted(types.items())),
        "worst": [{"image_id": r["image_id"], "faithfulness": r["faithfulness"], "completeness": r["completeness"],
                   "contradictions": [c["type"] for c in r["contradictions"][:3]]} for r in worst.iter_rows(named=True)],
    }
