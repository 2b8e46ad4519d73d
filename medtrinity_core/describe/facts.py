"""What a generator is told about one image, and what its description is checked against: the modality,
the organ, and per label its regions' measured facts (count, side, size, shape, contrast), the relations
between regions, and the passages retrieved for its findings. Every backend reads the same `Facts`;
the faithfulness scorer holds each description to them."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from medtrinity_core.knowledge.retrieve import image_labels
from medtrinity_core.knowledge.vocabulary import source_vocabulary

if TYPE_CHECKING:
    from medtrinity_core.sources.schema import SourceConfig


@dataclass(frozen=True)
class LabelFacts:
    """One label on the image: its regions (largest first) summarized by the largest."""

    label: str
    term: str | None  # canonical vocabulary term, None when unmapped
    category: str | None  # finding | anatomy | None (unknown)
    count: int  # regions of this label on the image (0: an image-level label with no region)
    side: str | None  # left | right | midline | None (not measured)
    size_class: str | None
    area_pct: float | None
    area_mm2: float | None
    volume_ml: float | None
    location: str | None  # the measured phrase, e.g. "anterior, patient's right"
    within: str | None  # e.g. "within the liver, in its anterior part"
    shape: str | None
    margin: str | None
    contrast: str | None
    texture: str | None
    colour: str | None
    method: str | None
    model_id: str | None
    confidence: float | None
    expected: str | None = None  # the vocabulary's expected appearance for this modality
    sides: tuple[str | None, ...] | None = None  # every region's side, largest first (the scorer's; not in the digest)

    @property
    def is_finding(self) -> bool:
        return self.category != "anatomy"


@dataclass(frozen=True)
class Relation:
    subject: str
    verb: str
    other: str
    apart: str  # "12 mm" or "3% of the image diagonal"


@dataclass(frozen=True)
class Passage:
    passage_id: str
    finding: str
    focus: str
    text: str


@dataclass(frozen=True)
class Facts:
    image_id: str
    modality: str
    body_region: str | None
    slice_axis: str | None
    slice_index: int | None
    annotated: bool  # the source annotates regions on this image (masks or boxes)
    labels: tuple[LabelFacts, ...] = ()  # largest region first; image-level labels last
    relations: tuple[Relation, ...] = ()
    passages: tuple[Passage, ...] = ()
    coarse_caption: str = ""
    found_by: str | None = None  # the expert model (id and version) that found the regions, when one looked for them

    @property
    def findings(self) -> tuple[LabelFacts, ...]:
        return tuple(f for f in self.labels if f.is_finding)

    @property
    def anatomy(self) -> tuple[LabelFacts, ...]:
        return tuple(f for f in self.labels if not f.is_finding)

    def digest(self) -> str:
        """A hash of everything a generator is told (the generation cache's key part); what only the
        scorer reads (`LabelFacts.sides`) is left out, so a new scorer keeps the cache."""
        told = asdict(self)
        for label in told["labels"]:
            label.pop("sides", None)
        if told["found_by"] is None:
            told.pop("found_by")  # images without an expert keep the key they always had
        return hashlib.sha256(json.dumps(told, sort_keys=True, default=str).encode()).hexdigest()[:16]


RELATIONS_STATED = 4
VERBS = {"contains": "contains", "inside": "lies within", "overlaps": "overlaps", "touches": "touches"}


def side_of(location: str | None) -> str | None:
    """left | right | midline from a measured location phrase (patient's or image terms), else None."""
    if not location:
        return None
    words = set(re.findall(r"[a-z]+", location.lower().replace("extending across the midline", "")))
    if "left" in words and "right" not in words:
        return "left"
    if "right" in words and "left" not in words:
        return "right"
    if words & {"midline", "central", "centre"}:
        return "midline"
    return None


def _label_facts(label: str, regions: list[dict], source: SourceConfig) -> LabelFacts:
    vocabulary = source_vocabulary(source)
    term = vocabulary.term(label)
    top = regions[0] if regions else {}
    expected = dict(term.appearance).get(source.modality) if term else None
    return LabelFacts(
        label=label, term=term.term if term else None, category=vocabulary.category(label), count=len(regions),
        side=side_of(top.get("location")), size_class=top.get("size_class"),
        area_pct=round(100 * top["area_ratio"], 1) if top.get("area_ratio") is not None else None,
        area_mm2=top.get("area_mm2"), volume_ml=top.get("volume_ml"), location=top.get("location"), within=top.get("within_location"),
        shape=top.get("shape"), margin=top.get("margin"), contrast=top.get("contrast"), texture=top.get("texture"), colour=top.get("colour"),
        method=top.get("method"), model_id=top.get("model_id"), confidence=top.get("confidence"), expected=expected,
        sides=tuple(side_of(r.get("location")) for r in regions) if regions else None,
    )


def relations_of(rois: list[dict]) -> tuple[Relation, ...]:
    """Each pair of labels once, by their largest regions, at most RELATIONS_STATED."""
    out, seen = [], set()
    by_id = {r["roi_id"]: r for r in rois}
    for roi in sorted(rois, key=lambda r: (-r["area_px"], r["roi_id"])):
        for rel in roi.get("relations") or []:
            pair = frozenset((roi["label"], rel["other_label"]))
            if pair in seen or rel["other_roi_id"] not in by_id:
                continue
            seen.add(pair)
            apart = f"{rel['distance_mm']:.0f} mm" if rel.get("distance_mm") else f"{rel['distance_pct']:.0f}% of the image diagonal"
            out.append(Relation(roi["label"], VERBS.get(rel["relation"], f"lies {rel['relation']}"), rel["other_label"], apart))
            if len(out) == RELATIONS_STATED:
                return tuple(out)
    return tuple(out)


def image_facts(source: SourceConfig, image: dict, rois: list[dict], context: dict | None = None, passages: dict[str, dict] | None = None) -> Facts:
    groups: dict[str, list[dict]] = {}
    for roi in sorted(rois, key=lambda r: (-r["area_px"], r["roi_id"])):
        groups.setdefault(roi["label"], []).append(roi)
    labels = [_label_facts(label, regions, source) for label, regions in groups.items()]
    if not image["masks"] and not image.get("boxes"):
        labels += [_label_facts(label, [], source) for label in image_labels(image) if label not in groups]
    cited = []
    for ref in (context or {}).get("passages") or []:
        passage = (passages or {}).get(ref["passage_id"])
        if passage:
            cited.append(Passage(ref["passage_id"], ref["finding"], passage.get("focus", ""), passage["text"]))
    return Facts(
        image_id=image["image_id"], modality=source.modality, body_region=source.body_region, slice_axis=image.get("slice_axis"),
        slice_index=image.get("slice_index"), annotated=any(not m.get("model") for m in image["masks"] or []) or bool(image.get("boxes")), labels=tuple(labels),
        relations=relations_of(rois), passages=tuple(cited), coarse_caption=(context or {}).get("coarse_caption") or "", found_by=_found_by(source, image, rois),
    )


def _found_by(source: SourceConfig, image: dict, rois: list[dict]) -> str | None:
    """The expert model (id and version) that found the image's regions, when one looked for them."""
    models = sorted({m["model"] for m in image["masks"] or [] if m.get("model")} | {r["model_id"] for r in rois if r.get("method") == "expert_model" and r.get("model_id")})
    if not models and image.get("expert_output") and source.precomputed_expert is not None:
        models = [source.precomputed_expert.model]
    return ", ".join(models) or None

