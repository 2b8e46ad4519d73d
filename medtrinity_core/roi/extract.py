"""The rois stage: ground-truth masks and boxes, expert-model predictions or flagged proposals, each
region measured (size, location, shape, appearance, multiplicity, relations)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import ndimage

from medtrinity_core.errors import ItemError
from medtrinity_core.ids import stable_id
from medtrinity_core.imaging.readers import OPPOSITE
from medtrinity_core.reasons import ROI_ERROR
from medtrinity_core.records import QUARANTINE, ROIS, frame, quarantine_row
from medtrinity_core.roi import rle
from medtrinity_core.roi.components import Component, components, from_box
from medtrinity_core.roi.facts import (
    PATIENT_SIDE,
    appearance,
    location_phrase,
    shape_facts,
    size_class,
    within_phrase,
)
from medtrinity_core.roi.proposals import propose
from medtrinity_core.roi.relations import CONTAINED, MAX_RELATED, intersection, relation
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

STAGE = "rois"
METHOD_MASK = "ground_truth_mask"
METHOD_BOX = "ground_truth_box"
METHOD_EXPERT = "expert_model"
METHOD_PROPOSAL = "proposal"


@dataclass(frozen=True)
class Candidate:
    key: tuple  # what makes the id: (kind, index, component)
    label: str
    comp: Component
    method: str
    confidence: float | None = None
    model_id: str | None = None
    mask_sha256: str | None = None


def patient_terms(kind: str, image_left: str | None, image_top: str | None) -> str:
    """Image directions in patient terms when the slice's orientation is known: "to the patient's
    right of" across the body, "anterior to" / "superior to" along the other axes."""
    if not (image_left and image_top):
        return kind
    letter = {"left of": image_left, "right of": OPPOSITE[image_left], "above": image_top, "below": OPPOSITE[image_top]}.get(kind)
    if letter is None:
        return kind
    return f"to the patient's {PATIENT_SIDE[letter]} of" if letter in ("R", "L") else f"{PATIENT_SIDE[letter]} to"


def resize_labels(labels: np.ndarray, width: int, height: int) -> np.ndarray:
    """A label image at another size, nearest neighbour (ids are never blended)."""
    h, w = labels.shape
    if (w, h) == (width, height):
        return labels
    rows = np.minimum(((np.arange(height) + 0.5) * h / height).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * w / width).astype(np.int64), w - 1)
    return labels[np.ix_(rows, cols)]


def _instances(labels: np.ndarray, min_pixels: int, min_fraction: float) -> list[tuple[int, Component]]:
    """(id, component) for every instance of an instance label image (a cell, a nucleus: one ROI each,
    whole even where the resize parts it), at least `min_pixels` and `min_fraction` of the image."""
    floor = max(min_pixels, min_fraction * labels.size)
    out = []
    for i, slc in enumerate(ndimage.find_objects(labels), start=1):
        if slc is None:
            continue
        crop = labels[slc] == i
        area = int(crop.sum())
        if area >= floor:
            out.append((i, Component(0, slc[1].start, slc[0].start, slc[1].stop, slc[0].stop, area, crop)))
    return out


def _output_candidates(source: SourceConfig, outputs: list, workdir: Workdir, width: int, height: int) -> list[Candidate]:
    """ROIs from a precomputed expert's 2D output (`roi.precomputed.Output`s at the image's original size)."""
    expert, out = source.precomputed_expert, []
    for o_index, output in enumerate(outputs):
        labels = resize_labels(output.labels, width, height)
        if output.instances:
            for n, (i, comp) in enumerate(_instances(labels, source.min_roi_pixels, source.min_roi_fraction)):
                if i in output.regions:
                    name, confidence = output.regions[i]
                    out.append(Candidate(("output", o_index, i, 0), name, Component(n, comp.x0, comp.y0, comp.x1, comp.y1, comp.area, comp.crop),
                                         METHOD_EXPERT, confidence, expert.model))
            continue
        for value, (name, confidence) in sorted(output.regions.items()):
            mask = labels == value
            if not mask.any():
                continue
            _, sha = workdir.put_png(mask.astype(np.uint8) * 255)
            for comp in components(mask, source.min_roi_pixels, source.min_roi_fraction):
                out.append(Candidate(("output", o_index, value, comp.index), name, comp, METHOD_EXPERT, confidence, expert.model, sha))
    return out


def _candidates(source: SourceConfig, row: dict, image: np.ndarray, workdir: Workdir, prediction, model_id, outputs=()) -> list[Candidate]:
    out: list[Candidate] = []
    for m_index, mask_row in enumerate(row["masks"] or []):
        mask = workdir.read_png(mask_row["uri"]) > 127
        model = mask_row.get("model")  # a precomputed expert's 3D output, sliced by the normalized stage
        for comp in components(mask, source.min_roi_pixels, source.min_roi_fraction):
            out.append(Candidate(("mask", m_index, comp.index), mask_row["label"], comp, METHOD_EXPERT if model else METHOD_MASK, model_id=model,
                                 mask_sha256=mask_row["sha256"]))
    for b_index, box in enumerate(row["boxes"] or []):
        x0, y0 = math.floor(box["x0"]), math.floor(box["y0"])
        x1, y1 = min(math.ceil(box["x1"]), row["width"]), min(math.ceil(box["y1"]), row["height"])
        out.append(Candidate(("box", b_index, 0), box["label"], from_box(0, x0, y0, x1, y1), METHOD_BOX))
    out += _output_candidates(source, outputs, workdir, row["width"], row["height"])
    if out or row["masks"]:
        return out
    if prediction is not None:
        labels, confidence = prediction
        for value, name in source.model_expert.labels:
            mask = labels == value
            if not mask.any():
                continue
            _, sha = workdir.put_png(mask.astype(np.uint8) * 255)
            for comp in components(mask, source.min_roi_pixels, source.min_roi_fraction):
                conf = float(confidence[comp.y0 : comp.y1, comp.x0 : comp.x1][comp.crop].mean())
                out.append(Candidate(("expert", value, comp.index), name, comp, METHOD_EXPERT, round(conf, 4), model_id, sha))
    elif source.proposals:
        mask, conf = propose(image, source.modality)
        label = ", ".join(row["labels"] or []) or "candidate region"
        for comp in components(mask, source.min_roi_pixels, source.min_roi_fraction)[:3]:
            out.append(Candidate(("proposal", 0, comp.index), label, comp, METHOD_PROPOSAL, round(conf, 4)))
    return out


def _container(c: Candidate, others: list[Candidate]) -> Candidate | None:
    """The smallest region of another label that holds this one (an organ around a lesion)."""
    best = None
    for o in others:
        if o.label == c.label or o.comp.area <= c.comp.area:
            continue
        if o.comp.x0 > c.comp.x0 or o.comp.y0 > c.comp.y0 or o.comp.x1 < c.comp.x1 or o.comp.y1 < c.comp.y1:
            continue
        if intersection(o.comp, c.comp) >= CONTAINED * c.comp.area and (best is None or o.comp.area < best.comp.area):
            best = o
    return best


def low_confidence(c: Candidate, source: SourceConfig) -> bool:
    """An expert's ROI whose confidence is under the expert's floor (null, where the tool writes none, is not floored)."""
    return c.method == METHOD_EXPERT and c.confidence is not None and source.min_confidence is not None and c.confidence < source.min_confidence


def image_rois(source: SourceConfig, row: dict, workdir: Workdir, prediction=None, model_id: str | None = None, outputs=()) -> list[dict]:
    if not (row["masks"] or row["boxes"] or prediction is not None or source.proposals or outputs):
        return []
    image = workdir.read_png(row["image_uri"])
    width, height = row["width"], row["height"]
    left, top = row["image_left"], row["image_top"]
    found = _candidates(source, row, image, workdir, prediction, model_id, outputs)
    ids = {c.key: stable_id("roi", row["image_id"], *c.key) for c in found}
    counts = Counter(c.label for c in found)
    volumes = {v["label"]: v["volume_ml"] for v in row.get("label_volumes") or []}
    related = sorted(found, key=lambda c: (-c.comp.area, ids[c.key]))[:MAX_RELATED]
    related_keys = {c.key for c in related}
    sx, sy = row["spacing_x"], row["spacing_y"]
    rows = []
    for c in found:
        comp = c.comp
        cx, cy = comp.centroid
        area_ratio = comp.area / float(width * height)
        relations = []
        if c.key in related_keys:
            for other in related:
                if other.key == c.key:
                    continue
                kind, distance = relation(comp, other.comp, width, height)
                (ox, oy), mm = other.comp.centroid, None
                if sx and sy:
                    mm = round(math.hypot((cx - ox) * sx, (cy - oy) * sy), 2)
                relations.append({"other_roi_id": ids[other.key], "other_label": other.label, "relation": patient_terms(kind, left, top), "distance_pct": distance, "distance_mm": mm})
        holder = _container(c, found)
        shape = shape_facts(comp) if c.method != METHOD_BOX else dict.fromkeys(("circularity", "solidity", "eccentricity", "orientation_deg", "shape", "margin"))
        rows.append(
            {
                "roi_id": ids[c.key],
                "image_id": row["image_id"],
                "source": source.name,
                "label": c.label,
                "method": c.method,
                "confidence": c.confidence,
                "low_confidence": low_confidence(c, source),
                "model_id": c.model_id,
                "mask_sha256": c.mask_sha256,
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
                "volume_ml": volumes.get(c.label),
                "label_count": counts[c.label],
                "centroid_x": round(cx, 3),
                "centroid_y": round(cy, 3),
                "location": location_phrase(cx, cy, width, height, left, top, row.get("body"), (comp.x0, comp.x1), source.midline_band),
                "within": holder.label if holder else None,
                "within_location": within_phrase(comp, holder.comp, holder.label, left, top) if holder else None,
                **shape,
                **appearance(image, comp, source.modality),
                "relations": relations,
                "rle_counts": rle.encode_crop(comp.crop, comp.x0, comp.y0, height, width),
            }
        )
    return rows


def _predict(expert, rows: list[dict], workdir: Workdir) -> tuple[dict[str, tuple], dict[str, str]]:
    """The expert's label maps for a batch; when the batch fails, image by image, so one image the model
    cannot take costs that image alone (its error is returned, to become a `roi_error` row)."""
    images = [workdir.read_png(r["image_uri"]) for r in rows]
    try:
        return {r["image_id"]: pred for r, pred in zip(rows, expert.predict(images))}, {}
    except Exception:  # noqa: BLE001, S110 - retried one by one below
        pass
    predictions, failed = {}, {}
    for r, image in zip(rows, images):
        try:
            predictions[r["image_id"]] = expert.predict([image])[0]
        except Exception as exc:  # noqa: BLE001 - a model raises anything
            last = [line.strip() for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
            failed[r["image_id"]] = f"expert model {expert.model_id} failed on this image: {last[0]}"[:300]  # TorchScript puts the cause last
    return predictions, failed


def _read_outputs(source: SourceConfig, row: dict, paths) -> list:
    """The image's precomputed 2D expert output, read at its original size (`ItemError` when it cannot be used)."""
    from medtrinity_core.roi.precomputed import read_output
    from medtrinity_core.sources.paths import inside

    public = row["expert_output"]
    path = inside(source.root, paths.private(public))
    return read_output(source.precomputed_expert, path, public, source.root, paths.private(row["relpath"]), (row["orig_height"], row["orig_width"]))


def extract_rois(source: SourceConfig, normalized_rows: Iterable[dict], workdir: Workdir, expert=None, expert_error: str | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`expert` (an `ExpertModel`) segments the images that have no ground-truth annotation, in batches.
    `expert_error` (the model could not be loaded) quarantines those images as `roi_error` instead. A
    precomputed expert's 2D outputs are read for the images that have one (`expert_output`); one that
    cannot be used quarantines its item with the reason the reader gives."""
    from medtrinity_core.sources.identity import SourcePaths

    paths = SourcePaths.of(workdir, source) if source.precomputed_expert else None
    rows, quarantined = [], []
    pending = list(normalized_rows)
    batch = expert.spec.batch_size if expert else len(pending) or 1
    for start in range(0, len(pending), batch):
        chunk = pending[start : start + batch]
        predictions, failed = {}, {}
        todo = [r for r in chunk if not (r["masks"] or r["boxes"])]
        if expert and todo:
            predictions, failed = _predict(expert, todo, workdir)
        elif expert_error:
            failed = {r["image_id"]: expert_error for r in todo}
        for image_row in chunk:
            if image_row["image_id"] in failed:
                quarantined.append(quarantine_row(image_row["item_id"], source.name, image_row["relpath"], STAGE, ROI_ERROR, failed[image_row["image_id"]]))
                continue
            try:
                outputs = _read_outputs(source, image_row, paths) if paths is not None and image_row.get("expert_output") else []
                rows.extend(image_rois(source, image_row, workdir, predictions.get(image_row["image_id"]), expert.model_id if expert else None, outputs))
            except ItemError as exc:
                private = [paths.private(rel) for rel in (image_row["relpath"], image_row.get("expert_output")) if rel] if paths is not None else []
                quarantined.append(quarantine_row(image_row["item_id"], source.name, image_row["relpath"], STAGE, exc.reason, paths.scrub(exc.detail, private) if paths else exc.detail))
            except Exception as exc:  # noqa: BLE001 - a broken mask must not stop the shard
                quarantined.append(quarantine_row(image_row["item_id"], source.name, image_row["relpath"], STAGE, ROI_ERROR, f"{type(exc).__name__}: {exc}"[:300]))
    return frame(rows, ROIS), frame(quarantined, QUARANTINE)


def dataset_rois(rois: pl.DataFrame, source: SourceConfig) -> pl.DataFrame:
    """The ROIs that may enter the dataset: proposals and low-confidence expert ROIs only when the source opts in."""
    if not source.include_proposals:
        rois = rois.filter(pl.col("method") != METHOD_PROPOSAL)
    if not source.include_low_confidence:
        rois = rois.filter(~pl.col("low_confidence").fill_null(False))
    return rois
