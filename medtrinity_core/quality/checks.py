"""Checks over stage manifests. Each returns (passed, metadata); the orchestrator decides severity."""

from __future__ import annotations

import polars as pl


def quarantine_share(quarantined: int, items: int, max_share: float) -> tuple[bool, dict]:
    share = quarantined / items if items else 0.0
    return share <= max_share, {"quarantined": quarantined, "items": items, "share": round(share, 4), "max_share": max_share}


def faithfulness(descriptions: pl.DataFrame, min_mean: float, max_contradiction_rate: float) -> tuple[bool, dict]:
    """A partition passes when its mean faithfulness reaches `min_mean` and the share of descriptions
    stating a contradiction is at most `max_contradiction_rate`; the metadata names the worst rows."""
    if descriptions.is_empty():
        return True, {"descriptions": 0}
    mean = float(descriptions["faithfulness"].mean())
    contradicted = descriptions.filter(pl.col("contradictions").list.len() > 0).height
    rate = contradicted / descriptions.height
    worst = descriptions.sort(["faithfulness", "image_id"]).head(5)
    return mean >= min_mean and rate <= max_contradiction_rate, {
        "descriptions": descriptions.height, "mean_faithfulness": round(mean, 4), "min_mean_faithfulness": min_mean,
        "contradiction_rate": round(rate, 4), "max_contradiction_rate": max_contradiction_rate,
        "worst": [{"image_id": r["image_id"], "faithfulness": r["faithfulness"], "contradictions": r["contradictions"][:3]} for r in worst.iter_rows(named=True)],
    }
