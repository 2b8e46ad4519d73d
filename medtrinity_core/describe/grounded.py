"""The `grounded` generator: deterministic, CPU-only. It writes the five facets as a radiologist would —
full sentences, findings first and placed by anatomy — from the measured facts and the retrieved
passages, and states nothing they do not hold. Each facet has at least three phrasings, chosen by a hash
of the image id and the facet, so output is deterministic while a dataset is not one sentence repeated.
The facets stay stored separately; the text joins them: modality and organ, findings, anatomy, colour
and texture, relationships, knowledge."""

from __future__ import annotations

import hashlib
import json
import re

from medtrinity_core.describe.facts import Facts, LabelFacts
from medtrinity_core.modalities import display_name

NAME = "grounded"
TEMPLATE_VERSION = "grounded-v5"
PASSAGES_QUOTED = 2
PARAMS = json.dumps({"passages_quoted": PASSAGES_QUOTED}, sort_keys=True)
NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def pick(facts: Facts, facet: str, options: list[str]) -> str:
    """One of `options`, the same for the same image and facet on every run."""
    n = int(hashlib.sha256(f"{facts.image_id}\x1f{facet}".encode()).hexdigest()[:8], 16)
    return options[n % len(options)]


def _number(n: int) -> str:
    return NUMBERS[n] if n < len(NUMBERS) else str(n)


def _a(word: str) -> str:
    """The article as the word is said: "an MRI slice", "an X-ray image", "a PET slice", "an oval polyp"."""
    first = word.split()[0] if word.split() else word
    acronym = first.replace("-", "").isupper() or first.startswith("X-")
    vowel = first[:1] in "AEFHILMNORSX" if acronym else first[:1].lower() in "aeiou"
    return ("an " if vowel else "a ") + word


def _plural(label: str) -> bool:
    """"retinal vessels", "neoplastic cells": a label naming many things takes a plural verb."""
    last = label.split()[-1].lower() if label.split() else ""
    return last.endswith("s") and not last.endswith(("ss", "us", "is", "sis"))


def _be(label: str) -> str:
    return "are" if _plural(label) else "is"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def modality_facet(facts: Facts) -> str:
    name = display_name(facts.modality)
    what = f"{facts.slice_axis} {name} slice" if facts.slice_axis else f"{name} image"
    if facts.slice_axis and facts.slice_index is not None:
        what += f" (slice {facts.slice_index} of the volume)"
    return pick(facts, "modality", [f"This is {_a(what)}.", f"{_cap(_a(what))} is shown.", f"The image is {_a(what)}."])


def organ_facet(facts: Facts) -> str:
    if not facts.body_region:
        return "The source does not state the organ or tissue."
    region = facts.body_region
    return pick(facts, "organ", [f"It shows the {region}.", f"The field of view covers the {region}.", f"The {region} is imaged."])


def _where(f: LabelFacts) -> str:
    if f.within:
        return f"{f.within} ({f.location})"
    return f"in the {f.location}"


def _size(f: LabelFacts) -> str:
    size = f"{f.area_pct:.1f}% of the image"
    if f.area_mm2:
        size += f", about {f.area_mm2:.0f} mm²"
    return size


def _origin(f: LabelFacts) -> str:
    if f.method == "expert_model":
        confidence = f" (confidence {f.confidence:.2f})" if f.confidence is not None else ""
        return f" It was found by the expert model {f.model_id}{confidence}, not annotated by hand."
    if f.method == "proposal":
        return f" It is an unverified proposal (confidence {f.confidence:.2f})."
    if f.method == "ground_truth_box":
        return " It comes from an annotated box."
    return ""


def region_sentence(facts: Facts, f: LabelFacts) -> str:
    """Where one label lies, how large and what shape, in one of three phrasings; every sentence names
    the label, so each claim has its subject."""
    adjectives = ", ".join(a for a in (f.size_class, f.shape) if a)
    margin = f" with {f.margin} margins" if f.margin else ""
    volume = f" ({f.volume_ml:.1f} ml in the whole volume)" if f.volume_ml else ""
    if f.count > 1:
        head = f"{_cap(_number(f.count))} regions of {f.label} are seen"
        options = [
            f"{head}; the largest {f.label} region, {adjectives}{margin}, lies {_where(f)} and covers {_size(f)}{volume}.",
            f"{head}. The largest {f.label} region is {adjectives}{margin}, {_where(f)}, covering {_size(f)}{volume}.",
            f"{head}, the largest {f.label} region being {adjectives}{margin} and {_where(f)}, covering {_size(f)}{volume}.",
        ]
    elif _plural(f.label):
        options = [
            f"{_cap(_a(adjectives + ' region')) if adjectives else 'A region'} of {f.label}{margin} lies {_where(f)}, covering {_size(f)}{volume}.",
            f"There is {_a(adjectives + ' region') if adjectives else 'a region'} of {f.label}{margin} {_where(f)}, covering {_size(f)}{volume}.",
            f"The region of {f.label} is {adjectives or 'outlined'}{margin}, {_where(f)}, and covers {_size(f)}{volume}.",
        ]
    else:
        thing = f"{adjectives} {f.label}" if adjectives else f.label
        options = [
            f"{_cap(_a(thing))}{margin} lies {_where(f)}, covering {_size(f)}{volume}.",
            f"There is {_a(thing)}{margin} {_where(f)}, covering {_size(f)}{volume}.",
            f"The {f.label} is {adjectives or 'outlined'}{margin}, {_where(f)}, and covers {_size(f)}{volume}.",
        ]
    return pick(facts, f"region:{f.label}", options) + _origin(f)


def location_facet(facts: Facts) -> str:
    measured = [f for f in facts.labels if f.count]
    if not measured:
        whole = [f.label for f in facts.labels]
        if whole:
            return pick(facts, "whole", [f"No region is annotated; the source labels the whole image {', '.join(whole)}.",
                                         f"The source labels the image as a whole ({', '.join(whole)}) and marks no region.",
                                         f"The label {', '.join(whole)} applies to the whole image; no region is outlined."])
        if facts.found_by:
            return f"The expert model {facts.found_by} found no region of the minimum size on this image."
        if facts.annotated:
            return "No annotated region reaches the minimum size on this image."
        return pick(facts, "none", ["No region of interest is annotated.", "The image has no annotated region.", "No region is outlined on this image."])
    findings = [f for f in measured if f.is_finding]
    anatomy = [f for f in measured if not f.is_finding]
    return " ".join(region_sentence(facts, f) for f in findings + anatomy)


def suspect_sentence(suspect: dict) -> str:
    """The annotation-suspect flag in words: the measured contrast says the opposite of what the finding
    is expected to look like, so the text does not pass the measurement off as the finding's appearance."""
    return (f"This contradicts what {_a(suspect['label'])} is expected to look like ({suspect['expected']}), so the "
            f"{suspect['label']} annotation is suspect.")


def appearance_facet(facts: Facts) -> str:
    from medtrinity_core.describe.faithfulness import annotation_suspects

    measured = [f for f in facts.labels if f.count and f.contrast]
    if not measured:
        return "No region is measured for colour or texture."
    suspects = {s["label"]: s for s in annotation_suspects(facts)}
    parts = []
    for f in measured:
        colour = f", {f.colour} in colour" if f.colour else ""
        plural = _plural(f.label)
        parts.append(pick(facts, f"look:{f.label}", [
            f"The {f.label} {_be(f.label)} {f.contrast} relative to the surrounding tissue{colour}, with {f.texture} texture.",
            (f"Relative to {'their' if plural else 'its'} surroundings the {f.label} {'appear' if plural else 'appears'} {f.contrast}{colour}, "
             f"{'their' if plural else 'its'} texture {f.texture}."),
            f"The {f.label} {'look' if plural else 'looks'} {f.contrast} against the adjacent tissue{colour} and {f.texture} in texture.",
        ]))
        if f.label in suspects:
            parts.append(suspect_sentence(suspects[f.label]))
    return " ".join(parts)


def relations_facet(facts: Facts) -> str:
    if not facts.relations:
        regions = sum(f.count for f in facts.labels)
        if regions == 1:
            marked = "found by the expert model" if facts.found_by and not facts.annotated else "annotated"
            return f"Only one region is {marked}, so no relationship is measured."
        return "No relationship between regions is measured."
    statements = []
    for rel in facts.relations:
        same = rel.subject == rel.other
        subject = f"one {rel.subject} region" if same else f"the {rel.subject}"
        other = f"another {rel.other} region" if same else f"the {rel.other}"
        statements.append(f"{subject} {rel.verb} {other} ({rel.apart} between centres)")
    joined = "; ".join(statements)
    return pick(facts, "relations", [f"{_cap(joined)}.", f"Between the regions, {joined}.", f"Measured between centres: {joined}."])


def supporting_sentence(text: str, terms: list[str]) -> str:
    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]
    words = [w for t in terms for w in re.findall(r"[a-z]{4,}", t.lower())]
    for sentence in sentences:
        if any(w in sentence.lower() for w in words):
            return sentence
    return sentences[0] if sentences else ""


def knowledge_facet(facts: Facts) -> tuple[str, list[str]]:
    """Quotes the first passages (round robin over the findings), each with the finding it was retrieved
    for; the sentence quoted is the first naming the finding, the organ or a label."""
    terms = [f.label for f in facts.labels] + ([facts.body_region] if facts.body_region else [])
    cited, parts = [], []
    for p in facts.passages[:PASSAGES_QUOTED]:
        quote = supporting_sentence(p.text, [p.finding, *terms])
        cited.append(p.passage_id)
        parts.append(pick(facts, f"cite:{p.passage_id}", [
            f'On {p.finding}, a passage about {p.focus} notes: "{quote}" [{p.passage_id}].',
            f'For {p.finding}, the knowledge base ({p.focus}) says: "{quote}" [{p.passage_id}].',
            f'Background on {p.finding} ({p.focus}): "{quote}" [{p.passage_id}].',
        ]))
    if not parts:
        return pick(facts, "noknowledge", ["No supporting passage was found in the knowledge base.", "The knowledge base holds no supporting passage for this image.",
                                           "No supporting passage was found."]), []
    return " ".join(parts), cited


class GroundedGenerator:
    """The CPU default: composes text from the facts; needs no model."""

    name = NAME
    model_id = None
    prompt_version = TEMPLATE_VERSION
    params = PARAMS
    needs_image = False

    def generate(self, batch: list[tuple[Facts, bytes | None]]) -> list[dict]:
        out = []
        for facts, _ in batch:
            knowledge, cited = knowledge_facet(facts)
            facets = {
                "modality": modality_facet(facts),
                "organ_tissue": organ_facet(facts),
                "roi_location": location_facet(facts),
                "colour_texture": appearance_facet(facts),
                "relationships": relations_facet(facts),
                "knowledge": knowledge,
            }
            out.append({"text": " ".join(facets.values()), "facets": facets, "cited_passages": cited, "missing_facets": [], "usage": None, "error": None})
        return out
