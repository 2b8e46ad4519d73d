"""The `grounded` generator: deterministic, CPU-only, composes the five facets from measured ROI facts
and retrieved passages. It states nothing its inputs do not hold, and cites the passages it quotes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

import polars as pl

from medtrinity_core.knowledge.retrieve import image_labels
from medtrinity_core.modalities import display_name
from medtrinity_core.records import DESCRIPTIONS, frame
from medtrinity_core.sources.schema import SourceConfig

GENERATOR = "grounded"
TEMPLATE_VERSION = "grounded-v3"
PASSAGES_QUOTED = 2
RELATIONS_STATED = 4
VERBS = {"contains": "contains", "inside": "lies within", "overlaps": "overlaps", "touches": "touches"}
PARAMS = json.dumps({"passages_quoted": PASSAGES_QUOTED, "relations_stated": RELATIONS_STATED}, sort_keys=True)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _by_label(rois: list[dict]) -> list[tuple[str, list[dict]]]:
    """Labels ordered by their largest region, each with its regions largest first."""
    groups: dict[str, list[dict]] = {}
    for roi in sorted(rois, key=lambda r: (-r["area_px"], r["roi_id"])):
        groups.setdefault(roi["label"], []).append(roi)
    return list(groups.items())


def modality_facet(source: SourceConfig, image: dict) -> str:
    text = f"Modality: {display_name(source.modality)}"
    if image.get("slice_axis"):
        text += f", {image['slice_axis']} slice {image['slice_index']} of a volume"
    return text + "."


def organ_facet(source: SourceConfig, image: dict) -> str:
    labels = image_labels(image)
    region = f"the {source.body_region}" if source.body_region else "region not stated by the source"
    structures = f"; annotated: {', '.join(labels)}" if image["masks"] and labels else ""
    return f"Organ and tissue: {region}{structures}."


def _origin(roi: dict) -> str:
    if roi["method"] == "expert_model":
        return f", segmented by model {roi['model_id']} (confidence {roi['confidence']:.2f})"
    if roi["method"] == "proposal":
        return f", an unverified proposal (confidence {roi['confidence']:.2f})"
    if roi["method"] == "ground_truth_box":
        return ", from an annotated box"
    return ""


def location_facet(image: dict, groups: list[tuple[str, list[dict]]]) -> str:
    if not groups:
        if image["masks"]:
            return "ROI location: no annotated region reaches the minimum size on this image."
        labels = image_labels(image)
        if labels:
            return f"ROI location: no region is annotated; the source labels the whole image {', '.join(labels)}."
        return "ROI location: no region of interest is annotated."
    parts = []
    for label, regions in groups:
        top = regions[0]
        size = f"{100 * top['area_ratio']:.1f}% of the image, {top['size_class']}"
        if top.get("area_mm2"):
            size += f", about {top['area_mm2']:.0f} mm²"
        if top.get("volume_ml"):
            size += f"; {top['volume_ml']:.1f} ml in the whole volume"
        shape = f", {top['shape']} and {top['margin']}" if top.get("shape") else ""
        lead = f"{label} ({_plural(len(regions), 'region')})" if len(regions) > 1 else label
        where = ("the largest lies " if len(regions) > 1 else "") + (f"{top['within_location']} ({top['location']})" if top.get("within_location") else f"in the {top['location']}")
        parts.append(f"{lead}: {where}, covering {size}{shape}{_origin(top)}")
    return "ROI location: " + "; ".join(parts) + "."


def appearance_facet(groups: list[tuple[str, list[dict]]]) -> str:
    if not groups:
        return "Colour and texture: no region is measured."
    parts = []
    for label, regions in groups:
        top = regions[0]
        colour = f", {top['colour']} in colour" if top.get("colour") else ""
        parts.append(f"{label}: {top['contrast']} relative to the surrounding tissue{colour}, {top['texture']} texture")
    return "Colour and texture: " + "; ".join(parts) + "."


def relations_facet(rois: list[dict]) -> str:
    if len(rois) < 2:
        return "Region relationships: " + ("only one region is annotated." if rois else "none, as no region is annotated.")
    statements, seen = [], set()
    by_id = {r["roi_id"]: r for r in rois}
    for roi in sorted(rois, key=lambda r: (-r["area_px"], r["roi_id"])):
        for rel in roi["relations"] or []:
            pair = frozenset((roi["label"], rel["other_label"]))  # each pair of labels once, by its largest regions
            if pair in seen or rel["other_roi_id"] not in by_id:
                continue
            seen.add(pair)
            other = f"another {rel['other_label']} region" if rel["other_label"] == roi["label"] else f"the {rel['other_label']}"
            subject = f"one {roi['label']} region" if rel["other_label"] == roi["label"] else f"the {roi['label']}"
            verb = VERBS.get(rel["relation"], f"lies {rel['relation']}")
            apart = f"{rel['distance_mm']:.0f} mm" if rel.get("distance_mm") else f"{rel['distance_pct']:.0f}% of the image diagonal"
            statements.append(f"{subject} {verb} {other} ({apart} between centres)")
            if len(statements) == RELATIONS_STATED:
                break
        if len(statements) == RELATIONS_STATED:
            break
    return "Region relationships: " + "; ".join(statements) + "." if statements else "Region relationships: none measured."


def supporting_sentence(text: str, terms: list[str]) -> str:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    words = [w for t in terms for w in re.findall(r"[a-z]{4,}", t.lower())]
    for sentence in sentences:
        if any(w in sentence.lower() for w in words):
            return sentence
    return sentences[0] if sentences else ""


def knowledge_facet(context: dict, passages: dict[str, dict], terms: list[str]) -> tuple[str, list[str]]:
    """Quotes the first passages of the context (round robin over its findings), each with the finding it
    was retrieved for; the sentence quoted is the first naming the finding, the organ or a label."""
    cited, parts = [], []
    for ref in (context or {}).get("passages") or []:
        passage = passages.get(ref["passage_id"])
        if not passage:
            continue
        cited.append(ref["passage_id"])
        parts.append(f"[{ref['passage_id']}] ({passage.get('focus', '')}; on {ref['finding']}) {supporting_sentence(passage['text'], [ref['finding'], *terms])}")
        if len(cited) == PASSAGES_QUOTED:
            break
    if not parts:
        return "Related knowledge: no supporting passage was found.", []
    return "Related knowledge: " + " ".join(parts), cited


def describe_image(source: SourceConfig, image: dict, rois: list[dict], context: dict | None, passages: dict[str, dict]) -> dict:
    groups = _by_label(rois)
    terms = image_labels(image) + ([source.body_region] if source.body_region else [])
    knowledge, cited = knowledge_facet(context, passages, terms)
    facets = {
        "modality": modality_facet(source, image),
        "organ_tissue": organ_facet(source, image),
        "roi_location": location_facet(image, groups),
        "colour_texture": appearance_facet(groups),
        "relationships": relations_facet(rois),
        "knowledge": knowledge,
    }
    return {
        "image_id": image["image_id"],
        "source": source.name,
        "text": " ".join(facets.values()),
        "facets": facets,
        "cited_passages": cited,
        "generator": GENERATOR,
        "generator_model": None,
        "generator_params": PARAMS,
        "template_version": TEMPLATE_VERSION,
    }


def describe(source: SourceConfig, images: Iterable[dict], rois: pl.DataFrame, context: pl.DataFrame, passages: dict[str, dict]) -> pl.DataFrame:
    """`passages` maps passage id to {"text", "focus"} for (at least) every id in `context`."""
    rois_by_image: dict[str, list[dict]] = {}
    for roi in rois.iter_rows(named=True):
        rois_by_image.setdefault(roi["image_id"], []).append(roi)
    context_by_image = {c["image_id"]: c for c in context.iter_rows(named=True)}
    rows = [describe_image(source, img, rois_by_image.get(img["image_id"], []), context_by_image.get(img["image_id"]), passages) for img in images]
    return frame(rows, DESCRIPTIONS)
