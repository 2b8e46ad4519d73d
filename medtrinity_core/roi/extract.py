"""The rois stage: ground-truth masks to measured regions of interest."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from medtrinity_core.ids import stable_id
from medtrinity_core.imaging.readers import OPPOSITE
from medtrinity_core.records import QUARANTINE, ROIS, frame, quarantine_row
from medtrinity_core.roi import rle
from medtrinity_core.roi.components import Component, components
from medtrinity_core.roi.facts import PATIENT_SIDE, appearance, location_phrase, size_class
from medtrinity_core.roi.relations import MAX_RELATED, relation
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

STAGE = "rois"
METHOD_MASK = "ground_truth_mask"


def patient_terms(kind: str, image_left: str | None, image_top: str | None) -> str:
    """Image directions in patient terms when the slice's orientation is known."""
    if not (image_left and image_top):
        return kind
    sides = {
        "left of": f"to the patient's {PATIENT_SIDE[image_left]} of",
        "right of": f"to the patient's {PATIENT_SIDE[OPPOSITE[image_left]]} of",
        "above": f"{PATIENT_SIDE[image_top]} to",
        "below": f"{PATIENT_SIDE[OPPOSITE[image_top]]} to",
    }
    return sides.get(kind, kind)


def image_rois(source: SourceConfig, image_row: dict, workdir: Workdir) -> list[dict]:
    if not image_row["masks"]:
        return []
    image = workdir.read_png(image_row["image_uri"])
    width, height = image_row["width"], image_row["height"]
    found: list[tuple[dict, Component, str]] = []
    for mask_index, mask_row in enumerate(image_row["masks"]):
        mask = workdir.read_png(mask_row["uri"]) > 127
        for comp in components(mask, source.min_roi_pixels, source.min_roi_fraction):
            roi_id = stable_id("roi", image_row["image_id"], mask_index, comp.index)
            found.append((mask_row, comp, roi_id))
    left, top = image_row["image_left"], image_row["image_top"]
    related = sorted(found, key=lambda f: (-f[1].area, f[2]))[:MAX_RELATED]
    rows = []
    for mask_row, comp, roi_id in found:
        cx, cy = comp.centroid
        area_ratio = comp.area / float(width * height)
        sx, sy = image_row["spacing_x"], image_row["spacing_y"]
        relations = []
        if any(r[2] == roi_id for r in related):
            for other_mask, other, other_id in related:
                if other_id == roi_id:
                    continue
                kind, distance = relation(comp, other, width, height)
                relations.append({"other_roi_id": other_id, "other_label": other_mask["label"], "relation": patient_terms(kind, left, top), "distance_pct": distance})
        rows.append(
            {
                "roi_id": roi_id,
                "image_id": image_row["image_id"],
                "source": source.name,
                "label": mask_row["label"],
                "method": METHOD_MASK,
                "mask_sha256": mask_row["sha256"],
                "component": comp.index,
                "x0": comp.x0,
                "y0": comp.y0,
                "x1": comp.x1,
                "y1": comp.y1,
                "img_w": width,
                "img_h": height,
                "area_px": comp.area,
                "area_ratio": round(area_ratio, 6),
                "area_mm2": round(comp.area * sx * sy, 3) if sx and sy else None,
                "size_class": size_class(area_ratio),
                "centroid_x": round(cx, 3),
                "centroid_y": round(cy, 3),
                "location": location_phrase(cx, cy, width, height, left, top),
                **appearance(image, comp.mask, source.modality),
                "relations": relations,
                "rle_counts": rle.encode(comp.mask),
            }
        )
    return rows


def extract_rois(source: SourceConfig, normalized_rows: Iterable[dict], workdir: Workdir) -> tuple[pl.DataFrame, pl.DataFrame]:
    rows, quarantined = [], []
    for image_row in normalized_rows:
        try:
            rows.extend(image_rois(source, image_row, workdir))
        except Exception as exc:  # noqa: BLE001 - a broken mask must not stop the shard
            quarantined.append(quarantine_row(image_row["item_id"], source.name, image_row["relpath"], STAGE, "roi_error", f"{type(exc).__name__}: {exc}"[:300]))
    return frame(rows, ROIS), frame(quarantined, QUARANTINE)
