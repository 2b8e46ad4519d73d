"""A review page for a person: per sampled image the ROI overlay, the description, the facts it was
held to, its faithfulness score and its flags (contradictions, suspect annotations, missing facets),
flagged rows first. One self-contained folder: `index.html` and `images/`."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

import polars as pl

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.roi.preview import preview_png
from medtrinity_core.storage import Workdir, atomic_write_bytes, read_parquet

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; background: #fafafa; }}
.card {{ display: flex; gap: 1.5em; background: white; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin-bottom: 1em; }}
.card.flagged {{ border-left: 6px solid #c0392b; }}
.card img {{ max-width: 384px; height: auto; }}
.score {{ font-weight: bold; }} .flag {{ color: #c0392b; }} dl {{ font-size: 0.9em; }} dt {{ font-weight: bold; }}
</style></head><body>
<h1>{title}</h1>
<p>{summary}</p>
{cards}
<script>
// the natural size of each overlay, for a reader (and a test) to see that every image loaded
window.addEventListener("load", () => document.querySelectorAll("img").forEach(img => img.dataset.naturalWidth = img.naturalWidth));
</script>
</body></html>
"""


def _flags(row: dict) -> list[str]:
    flags = [f"contradiction: {c['facet']}: {c['claim']} (fact: {c['fact']})" for c in row["contradictions"] or []]
    flags += [f"annotation suspect: {s['label']} expected {s['expected']}, measured {s['measured']}" for s in row["annotation_suspect"] or []]
    if row["missing_facets"]:
        flags.append("missing facets: " + ", ".join(row["missing_facets"]))
    return flags


def _card(row: dict, image: str, rois: list[dict], threshold: float) -> str:
    e = html.escape
    flags = _flags(row)
    facts = "".join(f"<dt>{e(r['label'])}</dt><dd>{e(r['location'] or '')}; {e(r['size_class'] or '')}, {100 * (r['area_ratio'] or 0):.1f}% of the image; "
                    f"{e(r['contrast'] or '')}; {e(r['method'])}</dd>" for r in rois)
    low = row["faithfulness"] < threshold
    return (f'<div class="card{" flagged" if flags or low else ""}" data-image-id="{e(row["image_id"])}">'
            f'<img src="{e(image)}" alt="{e(row["image_id"])}">'
            f'<div><p class="score">faithfulness {row["faithfulness"]:.2f}{" (under the threshold)" if low else ""} · {e(row["generator"])} '
            f'{e(row["generator_model"] or "")} · {e(row["template_version"])}</p>'
            f'<p>{e(row["text"])}</p>'
            + "".join(f'<p class="flag">{e(f)}</p>' for f in flags)
            + f"<dl>{facts}</dl><p><code>{e(row['image_id'])}</code></p></div></div>")


def write_review(workdir: Workdir, source, sample: int, out: Path) -> int:
    """Writes `out/index.html` for up to `sample` images of the source (flagged first, then a stable
    sample by image id); returns the number of cards."""
    frames = {stage: [read_parquet(p) for p in workdir.shard_manifests(source.name, stage)] for stage in ("descriptions", "normalized", "rois")}
    if not frames["descriptions"]:
        raise MedtrinityError(f"no descriptions for source {source.name} under {workdir.root}: run `medtrinity run` first")
    descriptions = pl.concat(frames["descriptions"], how="vertical_relaxed")
    normalized = pl.concat(frames["normalized"], how="vertical_relaxed")
    rois = pl.concat(frames["rois"], how="vertical_relaxed") if frames["rois"] else pl.DataFrame(schema={"image_id": pl.String})
    rows = sorted(descriptions.iter_rows(named=True),
                  key=lambda r: (not (_flags(r) or r["faithfulness"] < source.min_faithfulness), r["faithfulness"], hashlib.sha256(r["image_id"].encode()).hexdigest()))
    images = {r["image_id"]: r for r in normalized.iter_rows(named=True)}
    cards = []
    for row in rows[:sample]:
        image_rois = rois.filter(pl.col("image_id") == row["image_id"]).to_dicts() if rois.height else []
        name = f"images/{row['image_id']}.png"
        atomic_write_bytes(out / name, preview_png(workdir, images[row["image_id"]], image_rois, max_side=384))
        cards.append(_card(row, name, image_rois, source.min_faithfulness))
    flagged = sum(1 for r in rows if _flags(r) or r["faithfulness"] < source.min_faithfulness)
    summary = (f"{len(cards)} of {len(rows)} descriptions of {html.escape(source.name)}; {flagged} flagged; mean faithfulness "
               f"{descriptions['faithfulness'].mean():.3f}")
    atomic_write_bytes(out / "index.html", PAGE.format(title=f"Review: {html.escape(source.name)}", summary=summary, cards="\n".join(cards)).encode())
    return len(cards)
