"""Ground-truth boxes from COCO JSON, YOLO text files or a CSV table, in the image's pixel frame."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path, PurePosixPath

import polars as pl

from medtrinity_core.errors import ItemError
from medtrinity_core.reasons import BAD_ANNOTATION, BOX_OUTSIDE_IMAGE
from medtrinity_core.sources.paths import inside
from medtrinity_core.sources.schema import BoxSpec


@lru_cache(maxsize=8)
def _coco_index(path: str, mtime: float) -> dict[str, list[tuple[str, float, float, float, float]]]:
    doc = json.loads(Path(path).read_text())
    names = {c["id"]: c["name"] for c in doc.get("categories", [])}
    files = {img["id"]: img["file_name"] for img in doc.get("images", [])}
    index: dict[str, list] = {}
    for ann in doc.get("annotations", []):
        x, y, w, h = (float(v) for v in ann["bbox"])
        index.setdefault(files[ann["image_id"]], []).append((names.get(ann["category_id"], str(ann["category_id"])), x, y, x + w, y + h))
    return index


@lru_cache(maxsize=8)
def _csv_table(path: str, mtime: float) -> pl.DataFrame:
    return pl.read_csv(path, infer_schema_length=0)


def _lookup(index: dict, image_relpath: str):
    return index.get(image_relpath) or index.get(PurePosixPath(image_relpath).name) or []


def read_boxes(spec: BoxSpec, root: Path, annotation: str, image_relpath: str, width: int, height: int) -> list[dict]:
    """Boxes as {label, x0, y0, x1, y1} in pixels (x1, y1 exclusive), clipped to the image."""
    path = inside(root, annotation)
    try:
        if spec.format == "coco":
            raw = _lookup(_coco_index(str(path), path.stat().st_mtime), image_relpath)
        elif spec.format == "csv":
            table = _csv_table(str(path), path.stat().st_mtime)
            col = table[spec.image_column]
            rows = table.filter((col == image_relpath) | (col == PurePosixPath(image_relpath).name))
            raw = []
            for row in rows.iter_rows(named=True):
                a, b, c, d = (float(row[k]) for k in spec.box_columns)
                raw.append((row[spec.label_column], a, b, a + c, b + d) if spec.box_format == "xywh" else (row[spec.label_column], a, b, c, d))
        else:  # yolo: class cx cy w h, normalized to the image size
            raw = []
            for n, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                cls, cx, cy, w, h = line.split()[:5]
                if not 0 <= int(cls) < len(spec.classes):
                    raise ItemError(BAD_ANNOTATION, f"{annotation}:{n}: class {cls} is not in the source's {len(spec.classes)} classes")
                cx, cy, w, h = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
                raw.append((spec.classes[int(cls)], cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
    except (OSError, ValueError, KeyError, json.JSONDecodeError, pl.exceptions.PolarsError) as exc:
        raise ItemError(BAD_ANNOTATION, f"{annotation}: {type(exc).__name__}: {exc}"[:300]) from None
    boxes = []
    for label, x0, y0, x1, y1 in raw:
        if label is None or not str(label).strip():  # an empty CSV cell, a nameless COCO category: this item's defect, not its shard's
            raise ItemError(BAD_ANNOTATION, f"{annotation}: a box [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}] of {image_relpath} has an empty label")
        cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(width), x1), min(float(height), y1)
        if cx1 - cx0 < 1 or cy1 - cy0 < 1:
            raise ItemError(BOX_OUTSIDE_IMAGE, f"{annotation}: box {label} [{x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f}] lies outside the {width}x{height} image {image_relpath}")
        boxes.append({"label": str(label), "x0": cx0, "y0": cy0, "x1": cx1, "y1": cy1})
    return boxes
