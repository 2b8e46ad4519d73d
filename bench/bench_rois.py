"""`make bench-rois`: ROIs per second for the whole rois stage (facts included) against a floor.

The corpus is the bundled examples' masks, normalized once, then repeated to at least 2,000 masks.
The floor reads the same mask PNGs and computes the plainest equivalent geometry:
`scipy.ndimage.label` + `skimage.measure.regionprops` (area, box, centroid, eccentricity, solidity).
Both are timed in this process, on the same files, after one warm-up pass each.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.measure import regionprops

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import entry, finish, peak_in_subprocess, peak_rss_mb, table

from medtrinity_core.config import load_sources
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.roi.components import EIGHT
from medtrinity_core.roi.extract import extract_rois
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.storage import Workdir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
MASKS = 2000


def corpus(wd: Workdir, masks_wanted: int) -> list[tuple[object, list[dict]]]:
    """(source, normalized rows) with at least `masks_wanted` masks, examples repeated under new ids."""
    sources = [s for s in load_sources(EXAMPLES / "sources.yaml").sources if s.layout in ("image_masks", "volume_labels")]
    base = []
    for src in sources:
        items, _ = discover(src)
        raw, _ = inventory(src, items)
        norm, _ = normalize(src.model_copy(update={"max_side": 512}), raw.iter_rows(named=True), wd)
        base.append((src, [r for r in norm.iter_rows(named=True) if r["masks"]]))
    per_round = sum(len(r["masks"]) for _, rows in base for r in rows)
    rounds = -(-masks_wanted // per_round)
    return [(src, [{**r, "image_id": f"{r['image_id']}-{k}"} for k in range(rounds) for r in rows]) for src, rows in base]


def stage(wd: Workdir, work) -> int:
    return sum(extract_rois(src, rows, wd)[0].height for src, rows in work)


def floor(wd: Workdir, work) -> int:
    found = 0
    for src, rows in work:
        for row in rows:
            for m in row["masks"]:
                with wd.resolve(m["uri"]).open("rb") as fh:
                    mask = np.asarray(Image.open(fh)) > 127
                labelled, _ = ndimage.label(mask, structure=EIGHT)
                minimum = max(src.min_roi_pixels, src.min_roi_fraction * mask.size)
                for p in regionprops(labelled):
                    if p.area >= minimum:
                        _ = (p.area, p.bbox, p.centroid, p.eccentricity, p.solidity)
                        found += 1
    return found


def timed(fn, wd, work) -> tuple[float, int]:
    fn(wd, [(src, rows[:10]) for src, rows in work])  # warm-up: imports, lazy init
    start = time.perf_counter()
    result = fn(wd, work)
    return time.perf_counter() - start, result


def memory_point(masks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wd = Workdir.at(tmp)
        work = corpus(wd, masks)
        before = peak_rss_mb()
        stage(wd, work)
    print(before, peak_rss_mb())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wd = Workdir.at(tmp)
        work = corpus(wd, MASKS)
        masks = sum(len(r["masks"]) for _, rows in work for r in rows)
        images = sum(len(rows) for _, rows in work)
        t_stage, rois = timed(stage, wd, work)
        t_floor, regions = timed(floor, wd, work)
    (base_small, small), (base_large, large) = peak_in_subprocess(__file__, "--memory", "200"), peak_in_subprocess(__file__, "--memory", str(MASKS))
    stage_rate, floor_rate = masks / t_stage, masks / t_floor
    print(f"bench-rois: {images} images, {masks} masks -> {rois} ROIs (floor found {regions} regions)")
    table([
        ("rois stage (facts, relations, RLE)", f"{stage_rate:8.1f} masks/s  {rois / t_stage:8.1f} ROIs/s  ({t_stage:.2f} s)"),
        ("floor (label + regionprops)", f"{floor_rate:8.1f} masks/s  {regions / t_floor:8.1f} ROIs/s  ({t_floor:.2f} s)"),
        ("ratio to floor (target >= 0.5)", f"{stage_rate / floor_rate:8.3f}"),
        ("peak RSS, 200 / 2000 masks", f"{small:.0f} MB / {large:.0f} MB"),
        ("  of which imports and set-up", f"{base_small:.0f} MB / {base_large:.0f} MB"),
    ])
    finish("rois", masks, stage_rate, floor_rate, ((base_small, small), (base_large, large)), rois_per_s=round(rois / t_stage, 2))


if __name__ == "__main__":
    entry(main, memory_point)
