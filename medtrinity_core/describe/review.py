"""A review page for a person: per sampled image the ROI overlay, the description, the facts it was
held to, its faithfulness and completeness and its flags (each contradiction with its type and the
words that carry it, marked in the text; suspect annotations; missing facets), flagged rows first. One self-contained folder: `index.html` and `images/`."""

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
mark.contradiction {{ background: #f5b7b1; }}
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
    flags = [f"contradiction ({c['type']}): {c['claim']} (fact: {c['fact']})" for c in row["contradictions"] or []]
    flags += [f"annotation suspect: {s['label']} expected {s['expected']}, measured {s['measured']}" for s in row["annotation_suspect"] or []]
    if row["missing_facets"]:
        flags.append("missing facets: " + ", ".join(row["missing_facets"]))
    return flags


def _marked(text: str, contradictions: list[dict]) -> str:
    """The text, escaped, with each contradiction's span in a <mark> titled with its type."""
    out, at = [], 0
    for c in sorted(contradictions or [], key=lambda c: c["span"][0]):
        a, b = c["span"]
        if a < at:
            continue
        out += [html.escape(text[at:a]), f'<mark class="contradiction" title="{html.escape(c["type"])}: {html.escape(c["fact"])}">{html.escape(text[a:b])}</mark>']
        at = b
    return "".join(out) + html.escape(text[at:])


def _under(row: dict, source) -> bool:
    return row["faithfulness"] < source.min_faithfulness or (row.get("completeness") or 0.0) < source.min_completeness


def _origin(r: dict) -> str:
    """How an ROI was found: its method, and for a model its id, version and confidence."""
    if r["method"] not in ("expert_model", "proposal"):
        return r["method"]
    confidence = f", confidence {r['confidence']:.2f}" if r.get("confidence") is not None else ", no confidence given by the tool"
    model = f" {r['model_id']}" if r.get("model_id") else ""
    low = " (low confidence: kept out of the dataset)" if r.get("low_confidence") else ""
    return f"{r['method']}{model}{confidence}{low}"


def _card(row: dict, image: str, rois: list[dict], source) -> str:
    e = html.escape
    flags = _flags(row)
    lows = sorted({r["label"] for r in rois if r.get("low_confidence")})
    if lows:
        flags.append(f"low-confidence expert regions (under min_confidence {source.min_confidence}): {', '.join(lows)}")
    low_class = ' class="low-confidence"'
    facts = "".join(f"<dt>{e(r['label'])}</dt><dd{low_class if r.get('low_confidence') else ''}>{e(r['location'] or '')}; "
                    f"{e(r['size_class'] or '')}, {100 * (r['area_ratio'] or 0):.1f}% of the image; {e(r['contrast'] or '')}; {e(_origin(r))}</dd>" for r in rois)
    low = _under(row, source)
    return (f'<div class="card{" flagged" if flags or low else ""}" data-image-id="{e(row["image_id"])}">'
            f'<img src="{e(image)}" alt="{e(row["image_id"])}">'
            f'<div><p class="score">faithfulness {row["faithfulness"]:.2f} · completeness {row.get("completeness") or 0.0:.2f}'
            f'{" (excluded: under the thresholds)" if low else ""} · {e(row["generator"])} '
            f'{e(row["generator_model"] or "")} · {e(row["template_version"])}</p>'
            f'<p>{_marked(row["text"], row["contradictions"])}</p>'
            + "".join(f'<p class="flag">{e(f)}</p>' for f in flags)
            + f"<dl>{facts}</dl><p><code>{e(row['image_id'])}</code></p></div></div>")


def write_review(workdir: Workdir, source, sample: int, out: Path) -> int:
    """Writes `out/index.html` for up to `sample` images of the source (flagged first, then a stable
    sample by image id); returns the number of cards."""
    frames = {stage: [read_parquet(p) for p in workdir.shard_manifests(source.name, stage)] for stage in ("descriptions", "normalized", "rois")}
    if not frames["descriptions"]:
        raise MedtrinityError(f"no descriptions for source {source.name} under {workdir.root}: run `medtrinity run` first")
    if any("completeness" not in f.columns for f in frames["descriptions"]):
        raise MedtrinityError(f"descriptions of {source.name} under {workdir.root} were scored by an older scorer: run `medtrinity run` again (it rescores them)")
    descriptions = pl.concat(frames["descriptions"], how="vertical_relaxed")
    normalized = pl.concat(frames["normalized"], how="vertical_relaxed")
    rois = pl.concat(frames["rois"], how="vertical_relaxed") if frames["rois"] else pl.DataFrame(schema={"image_id": pl.String})
    rows = sorted(descriptions.iter_rows(named=True),
                  key=lambda r: (not (_flags(r) or _under(r, source)), r["faithfulness"], r.get("completeness") or 0.0, hashlib.sha256(r["image_id"].encode()).hexdigest()))
    images = {r["image_id"]: r for r in normalized.iter_rows(named=True)}
    cards = []
    for row in rows[:sample]:
        image_rois = rois.filter(pl.col("image_id") == row["image_id"]).to_dicts() if rois.height else []
        name = f"images/{row['image_id']}.png"
        atomic_write_bytes(out / name, preview_png(workdir, images[row["image_id"]], image_rois, max_side=384))
        cards.append(_card(row, name, image_rois, source))
    flagged = sum(1 for r in rows if _flags(r) or _under(r, source))
    summary = (f"{len(cards)} of {len(rows)} descriptions of {html.escape(source.name)}; {flagged} flagged; mean faithfulness "
               f"{descriptions['faithfulness'].mean():.3f}, mean completeness {descriptions['completeness'].mean():.3f}")
    atomic_write_bytes(out / "index.html", PAGE.format(title=f"Review: {html.escape(source.name)}", summary=summary, cards="\n".join(cards)).encode())
    return len(cards)
