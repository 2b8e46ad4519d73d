"""Checks over stage manifests. Each returns (passed, metadata); the orchestrator decides severity."""

from __future__ import annotations

import polars as pl

from medtrinity_core.modalities import display_name


def unique_ids(df: pl.DataFrame, column: str) -> tuple[bool, dict]:
    dupes = df.group_by(column).len().filter(pl.col("len") > 1)
    return dupes.is_empty(), {"rows": df.height, "duplicate_ids": dupes.height, "examples": dupes[column].head(5).to_list()}


def boxes_inside_image(rois: pl.DataFrame) -> tuple[bool, dict]:
    bad = rois.filter(
        (pl.col("x0") < 0) | (pl.col("y0") < 0) | (pl.col("x1") > pl.col("img_w")) | (pl.col("y1") > pl.col("img_h"))
        | (pl.col("x1") <= pl.col("x0")) | (pl.col("y1") <= pl.col("y0"))
    )
    return bad.is_empty(), {"rois": rois.height, "outside": bad.height, "examples": bad["roi_id"].head(5).to_list()}


def descriptions_name_modality_and_organ(triplets: pl.DataFrame, modality: str, body_region: str | None) -> tuple[bool, dict]:
    """Every description names its modality, and its organ or tissue when the source states one."""
    text = pl.col("description").str.to_lowercase()
    ok = text.str.contains(display_name(modality).lower(), literal=True)
    if body_region:
        ok = ok & text.str.contains(body_region.lower(), literal=True)
    bad = triplets.filter(~ok)
    return bad.is_empty(), {"triplets": triplets.height, "missing": bad.height, "examples": bad["triplet_id"].head(5).to_list()}


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
