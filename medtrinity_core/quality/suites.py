"""Data-quality suites, one per stage manifest, run with Great Expectations 1.x in an ephemeral context.

Each suite builds frames from the manifest (derived columns where a fact needs the image files or
several columns: a mask's emptiness and shape, a box inside its image, a label's outlier range, a text's
patient-data findings), then validates them with plain GX expectations. Each expectation has a
severity: an `error` failure fails the stage's blocking check (its downstream stages do not run), a
`warn` failure is reported and blocks nothing. Severities and thresholds are configurable per source
(`quality:` in the sources file); the defaults keep the bundled demo green.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from medtrinity_core.modalities import MODALITIES, display_name

# Patient data in text: DICOM person names, dates in three forms, MRN-like runs of digits.
PERSON_NAME = re.compile(r"\b[A-Z][A-Za-z'\-]*\^[A-Z][A-Za-z\-]*")
DATES = re.compile(r"(?<![\w.])(?:(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])|(?:19|20)\d{2}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.](?:19|20)?\d{2})(?!\w|\.\d)")
MRN = re.compile(r"(?<![\w.])\d{6,}(?!\w|\.\d|\s*(?:mm|ml|%|px|cm))")
CITATION = re.compile(r"\[[^\]\s]+\]")  # passage ids such as [medquad:1_CancerGov_QA/0000013_2_1/1#0]
QUOTE = re.compile(r"\"[^\"]*\"")  # quoted knowledge passages: exempt from the name rule (eponyms)


@dataclass
class Expectation:
    name: str  # what a person reads in the check's metadata
    frame: str  # which frame of the suite it validates
    gx: object  # a great_expectations expectation
    severity: str = "error"


@dataclass
class SuiteResult:
    stage: str
    errors: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def metadata(self) -> dict:
        return {"suite": self.stage, "expectations": len(self.errors) + len(self.warnings) + len(self.passed), "passed": len(self.passed),
                "errors": self.errors, "warnings": self.warnings}


def patient_data_findings(text: str, names: set[str] = frozenset()) -> list[str]:
    """Patient-data patterns in one text: person names (outside quoted passages), tokens of the item's own
    patient name, dates, MRN-like runs of six or more digits (outside passage ids and measurements)."""
    if not text:
        return []
    plain = CITATION.sub(" ", text)
    unquoted = QUOTE.sub(" ", plain)
    found = [f"person name {m.group(0)!r}" for m in PERSON_NAME.finditer(unquoted)]
    found += [f"patient name token {t!r}" for t in sorted(names) if re.search(rf"\b{re.escape(t)}\b", unquoted, flags=re.IGNORECASE)]
    found += [f"date {m.group(0)!r}" for m in DATES.finditer(plain)]
    found += [f"MRN-like number {m.group(0)!r}" for m in MRN.finditer(DATES.sub(" ", plain))]
    return found


def _gx():
    import logging

    import great_expectations as gx

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    return gx, context


def _id(value) -> str:
    """A row's id as the metadata names it; a missing id is `null`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    return str(value)


def validate(stage: str, frames: dict[str, pl.DataFrame], ids: dict[str, str], expectations: list[Expectation]) -> SuiteResult:
    """Runs each frame's expectations through GX; a failure names up to ten failing rows by id."""
    gx, context = _gx()
    result = SuiteResult(stage)
    source = context.data_sources.add_pandas(f"{stage}-frames")
    for name, df in frames.items():
        mine = [e for e in expectations if e.frame == name]
        if not mine:
            continue
        if df.is_empty():
            result.passed += [e.name for e in mine]
            continue
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": df.to_pandas()})
        suite = gx.ExpectationSuite(name=f"{stage}.{name}")
        for e in mine:
            suite.add_expectation(e.gx)
        outcome = batch.validate(suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [ids[name]]})
        for e, r in zip(mine, outcome.results):
            if r.success:
                result.passed.append(e.name)
                continue
            rows = sorted({_id(x[ids[name]]) for x in (r.result.get("unexpected_index_list") or [])})
            entry = {"expectation": e.name, "gx": r.expectation_config.type, "failing_rows": r.result.get("unexpected_count", len(rows)), "examples": rows[:10]}
            (result.errors if e.severity == "error" else result.warnings).append(entry)
    return result


def _severity(config: dict, name: str, default: str = "error") -> str:
    return (config.get("severity") or {}).get(name, default)


# -- normalized -----------------------------------------------------------------------------------------

def normalized_frames(images: pl.DataFrame, workdir) -> dict[str, pl.DataFrame]:
    """Images, with their normalization parameters checked; masks, read back: non-empty, of the image's
    shape, and none identical to another mask of the same image."""
    from PIL import Image

    image_rows, mask_rows = [], []
    for img in images.iter_rows(named=True):
        norm = json.loads(img["normalization"] or "{}")
        intensity = norm.get("intensity") or {}
        ok = True
        if intensity.get("method") == "window":
            ok = (intensity.get("width") or 0) > 0
        if intensity.get("method") == "percentile":
            lo, hi = intensity.get("percentiles") or [0, 100]
            ok = 0 <= lo < hi <= 100 and intensity.get("lo", 0) <= intensity.get("hi", 1)
        size = norm.get("resized") or [img["width"], img["height"]]
        image_rows.append({"image_id": img["image_id"], "width": img["width"], "height": img["height"], "params_ok": ok and min(size) > 0})
        seen = {}
        for n, mask in enumerate(img["masks"] or []):
            with Image.open(workdir.resolve(mask["uri"])) as m:
                pixels = np.asarray(m)
            key = f"{img['image_id']}#{n}:{mask['label']}"
            duplicate = mask["sha256"] in seen and seen[mask["sha256"]] != mask["label"] or mask["sha256"] in seen
            seen.setdefault(mask["sha256"], mask["label"])
            mask_rows.append({"mask": key, "nonempty": bool(pixels.any()), "shape_ok": pixels.shape[:2] == (img["height"], img["width"]), "duplicate": bool(duplicate)})
    return {"images": pl.DataFrame(image_rows, schema={"image_id": pl.String, "width": pl.Int64, "height": pl.Int64, "params_ok": pl.Boolean}),
            "masks": pl.DataFrame(mask_rows, schema={"mask": pl.String, "nonempty": pl.Boolean, "shape_ok": pl.Boolean, "duplicate": pl.Boolean})}


def normalized_suite(images: pl.DataFrame, workdir, config: dict) -> SuiteResult:
    import great_expectations as gx

    e = gx.expectations
    return validate("normalized", normalized_frames(images, workdir), {"images": "image_id", "masks": "mask"}, [
        Expectation("image ids are non-null", "images", e.ExpectColumnValuesToNotBeNull(column="image_id")),
        Expectation("image ids are unique", "images", e.ExpectColumnValuesToBeUnique(column="image_id")),
        Expectation("images have a positive size", "images", e.ExpectColumnValuesToBeBetween(column="width", min_value=1)),
        Expectation("normalization parameters are in range", "images", e.ExpectColumnValuesToBeInSet(column="params_ok", value_set=[True])),
        Expectation("every mask is non-empty", "masks", e.ExpectColumnValuesToBeInSet(column="nonempty", value_set=[True]), _severity(config, "empty_mask")),
        Expectation("every mask has its image's shape", "masks", e.ExpectColumnValuesToBeInSet(column="shape_ok", value_set=[True])),
        Expectation("no two masks of an image are identical", "masks", e.ExpectColumnValuesToBeInSet(column="duplicate", value_set=[False]),
                    _severity(config, "duplicate_mask")),
    ])


# -- rois -----------------------------------------------------------------------------------------------

def _learned_range(values: list[float]) -> tuple[float, float] | None:
    """A label's plausible range learned from the source's own values: in log space, the median plus or
    minus 8 median absolute deviations (at least 0.4 each), i.e. off by more than about 25 times at the
    least — a mask on the wrong image or of the wrong structure, not a small lesion. Needs ten values;
    else none is learned."""
    logs = [math.log(v) for v in values if v and v > 0]
    if len(logs) < 10:
        return None
    median = float(np.median(logs))
    mad = max(float(np.median(np.abs(np.asarray(logs) - median))), 0.4)
    return math.exp(median - 8 * mad), math.exp(median + 8 * mad)


def rois_frames(rois: pl.DataFrame, history: pl.DataFrame, config: dict, is_known) -> dict[str, pl.DataFrame]:
    """ROIs with derived facts: box inside the image, the label's area ratio and per-image count inside
    the configured or learned range, the label mapped or not. `history` is the source's ROIs so far (all
    shards) from which ranges are learned."""
    ranges = config.get("label_ranges") or {}
    counts = rois.group_by(["image_id", "label"]).len()
    per_image = {(r["image_id"], r["label"]): r["len"] for r in counts.iter_rows(named=True)}
    learned = {label: _learned_range(group["area_ratio"].to_list()) for (label,), group in history.group_by(["label"])} if history.height else {}
    rows = []
    for roi in rois.iter_rows(named=True):
        configured = ranges.get(roi["label"]) or {}
        area_range = configured.get("area_ratio") or learned.get(roi["label"])
        count_range = configured.get("count")
        n = per_image[(roi["image_id"], roi["label"])]
        rows.append({
            "roi_id": roi["roi_id"], "label": roi["label"], "area_ratio": roi["area_ratio"],
            "inside": 0 <= roi["x0"] < roi["x1"] <= roi["img_w"] and 0 <= roi["y0"] < roi["y1"] <= roi["img_h"],
            "area_in_range": area_range is None or area_range[0] <= roi["area_ratio"] <= area_range[1],
            "count_in_range": count_range is None or count_range[0] <= n <= count_range[1],
            "mapped": bool(is_known(roi["label"])),
        })
    schema = {"roi_id": pl.String, "label": pl.String, "area_ratio": pl.Float64, "inside": pl.Boolean, "area_in_range": pl.Boolean, "count_in_range": pl.Boolean, "mapped": pl.Boolean}
    return {"rois": pl.DataFrame(rows, schema=schema)}


def rois_suite(rois: pl.DataFrame, history: pl.DataFrame, config: dict, is_known) -> SuiteResult:
    import great_expectations as gx

    e = gx.expectations
    return validate("rois", rois_frames(rois, history, config, is_known), {"rois": "roi_id"}, [
        Expectation("ROI ids are non-null", "rois", e.ExpectColumnValuesToNotBeNull(column="roi_id")),
        Expectation("ROI ids are unique", "rois", e.ExpectColumnValuesToBeUnique(column="roi_id")),
        Expectation("every ROI has a label", "rois", e.ExpectColumnValuesToNotBeNull(column="label")),
        Expectation("ROI boxes lie inside the image", "rois", e.ExpectColumnValuesToBeInSet(column="inside", value_set=[True])),
        Expectation("0 < area ratio <= 1", "rois", e.ExpectColumnValuesToBeBetween(column="area_ratio", min_value=0, max_value=1, strict_min=True)),
        Expectation("area ratios inside the label's range", "rois", e.ExpectColumnValuesToBeInSet(column="area_in_range", value_set=[True]),
                    _severity(config, "outlier", "warn")),
        Expectation("ROIs per image inside the label's range", "rois", e.ExpectColumnValuesToBeInSet(column="count_in_range", value_set=[True]),
                    _severity(config, "outlier", "warn")),
        Expectation("labels are vocabulary terms (else flagged unmapped)", "rois", e.ExpectColumnValuesToBeInSet(column="mapped", value_set=[True]), "warn"),
    ])


# -- descriptions and triplets --------------------------------------------------------------------------

FACETS = ("modality", "organ_tissue", "roi_location", "colour_texture", "relationships", "knowledge")


def descriptions_frames(descriptions: pl.DataFrame, config: dict, names: dict[str, set[str]]) -> dict[str, pl.DataFrame]:
    rows = []
    for d in descriptions.iter_rows(named=True):
        facets = d["facets"] or {}
        missing = set(d["missing_facets"] or [])
        texts = [d["text"] or ""] + [facets.get(k) or "" for k in FACETS]
        rows.append({"image_id": d["image_id"], "chars": len(d["text"] or ""), "facets_complete": all(facets.get(k) or k in missing for k in FACETS),
                     "patient_data": len([f for t in texts for f in patient_data_findings(t, names.get(d["image_id"], set()))])})
    return {"descriptions": pl.DataFrame(rows, schema={"image_id": pl.String, "chars": pl.Int64, "facets_complete": pl.Boolean, "patient_data": pl.Int64})}


def descriptions_suite(descriptions: pl.DataFrame, config: dict, names: dict[str, set[str]] | None = None) -> SuiteResult:
    import great_expectations as gx

    e = gx.expectations
    low, high = config.get("description_chars") or (40, 6000)
    return validate("descriptions", descriptions_frames(descriptions, config, names or {}), {"descriptions": "image_id"}, [
        Expectation("image ids are unique", "descriptions", e.ExpectColumnValuesToBeUnique(column="image_id")),
        Expectation(f"description length within {low}-{high} characters", "descriptions", e.ExpectColumnValuesToBeBetween(column="chars", min_value=low, max_value=high),
                    _severity(config, "length")),
        Expectation("every facet written or recorded missing", "descriptions", e.ExpectColumnValuesToBeInSet(column="facets_complete", value_set=[True])),
        Expectation("no patient data in any text", "descriptions", e.ExpectColumnValuesToBeBetween(column="patient_data", max_value=0), _severity(config, "patient_data")),
    ])


def triplets_frames(triplets: pl.DataFrame, modality: str, body_region: str | None, names: dict[str, set[str]]) -> dict[str, pl.DataFrame]:
    rows = []
    for t in triplets.iter_rows(named=True):
        text = (t["description"] or "").lower()
        prov = t["provenance"] or {}
        fields = [t["description"], t["coarse_caption"], *(t["facets"] or {}).values(), *(r["label"] for r in t["rois"]), *(r["location"] for r in t["rois"]),
                  prov.get("source_relpath"), prov.get("citation")]
        rows.append({
            "triplet_id": t["triplet_id"], "modality": t["modality"], "license": t["license"],
            "names_modality_and_organ": display_name(modality).lower() in text and (not body_region or body_region.lower() in text),
            "patient_data": len([f for value in fields for f in patient_data_findings(value or "", names.get(t["image_id"], set()))]),
        })
    schema = {"triplet_id": pl.String, "modality": pl.String, "license": pl.String, "names_modality_and_organ": pl.Boolean, "patient_data": pl.Int64}
    return {"triplets": pl.DataFrame(rows, schema=schema)}


def triplets_suite(triplets: pl.DataFrame, modality: str, body_region: str | None, config: dict, names: dict[str, set[str]] | None = None) -> SuiteResult:
    import great_expectations as gx

    e = gx.expectations
    return validate("triplets", triplets_frames(triplets, modality, body_region, names or {}), {"triplets": "triplet_id"}, [
        Expectation("triplet ids are non-null", "triplets", e.ExpectColumnValuesToNotBeNull(column="triplet_id")),
        Expectation("triplet ids are unique", "triplets", e.ExpectColumnValuesToBeUnique(column="triplet_id")),
        Expectation("modalities are allowed", "triplets", e.ExpectColumnValuesToBeInSet(column="modality", value_set=sorted(MODALITIES))),
        Expectation("every row carries a licence", "triplets", e.ExpectColumnValuesToNotBeNull(column="license")),
        Expectation("each description names its modality and organ", "triplets", e.ExpectColumnValuesToBeInSet(column="names_modality_and_organ", value_set=[True])),
        Expectation("no patient data in any text field", "triplets", e.ExpectColumnValuesToBeBetween(column="patient_data", max_value=0), _severity(config, "patient_data")),
    ])


def schema_problems(df: pl.DataFrame, expected: dict) -> list[str]:
    """Columns missing or of another type than the manifest's schema (records.py)."""
    out = [f"column {name} is missing" for name in expected if name not in df.columns]
    out += [f"column {name} is {df.schema[name]}, not {dtype}" for name, dtype in expected.items() if name in df.columns and df.schema[name] != dtype]
    return out
