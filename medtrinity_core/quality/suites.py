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
from medtrinity_core.records import FACET_NAMES

# Patient data in text and in file names: DICOM person names, dates, MRN-like numbers (see
# patient_data_findings and README "Patient data"). `\b` and `\w` count `_` and digits as word
# characters, so `_8675309_` or `MRN8675309` would slip through them: the patterns below bound on
# letters and digits themselves, and numbers are judged per token with their context. `[^\W\d_]` is a
# letter of any script (`Øie^Åse`, `Wójcik^Łukasz`).
LETTER = r"[^\W\d_]"
PERSON_NAME = re.compile(rf"(?<!{LETTER}){LETTER}(?:{LETTER}|')*(?:-(?:{LETTER}|')+)*\^{LETTER}+(?:-{LETTER}+)*")
MONTH = r"(?i:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
DAY = r"(?:0?[1-9]|[12]\d|3[01])"
DATES = re.compile(
    r"(?<![0-9])(?<![0-9][.,])(?:"
    r"(?:19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # 19520317
    r"|(?:19|20)\d{2}([-_./])(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])"  # 1952-03-17, 1952_03_17
    r"|(?:19|20)\d{2}([-/])(?:0?[1-9]|1[0-2])\2(?:0?[1-9]|[12]\d|3[01])"  # 1952-3-17, 1952/3/7 (not zero-padded)
    r"|(?:0?[1-9]|[12]\d|3[01])([-_./])(?:0?[1-9]|[12]\d|3[01])\3(?:19|20)\d{2}"  # 17.03.1952, 03/17/1952, 17-03-1952
    r"|(?:0?[1-9]|[12]\d|3[01])/(?:0?[1-9]|[12]\d|3[01])/\d{2}"  # 17/03/52
    rf"|{DAY}([-_ ./]?){MONTH}\4(?:19|20)\d{{2}}"  # 17-MAR-1952, 17Mar1952, 17 March 1952
    r")(?![0-9])(?![.,][0-9])")
# Shorter or looser forms, a date only right after a date's context word (`DOB_17.03.52`, `born 1952_3_7`,
# `DOB 17MAR52`): elsewhere they are versions and counters.
LOOSE_DATES = re.compile(
    r"(?<![0-9])(?<![0-9][.,])(?:"
    r"(?:19|20)\d{2}([-_./])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])"  # 1952.3.7, 1952_3_17
    r"|(?:0?[1-9]|[12]\d|3[01])([-_./])(?:0?[1-9]|[12]\d|3[01])\2\d{2}"  # 17.03.52, 3-7-52, 17_03_52
    rf"|{DAY}([-_ ./]?){MONTH}\3\d{{2}}"  # 17MAR52, 17-Mar-52
    r")(?![0-9])(?![.,][0-9])")
DATE_CONTEXT = ("dob", "birth", "born", "birthdate", "birthday", "date", "dated", "dos")
MRN = re.compile(r"(?<![0-9])[0-9]{6,}(?![0-9])")  # a run of six or more digits: judged by _mrn_like
# Words that make the number after them (joined, or across `_ - : # = / .` and spaces) a patient's.
# A bare `id` is not one: datasets name every file `ID_<n>` (RSNA's `ID_000012eaf.dcm`, whose hex is all
# digits for about 1.5% of its 750,000 names); `PatientID`, `patient_id` and `pid` are.
CONTEXT_WORDS = frozenset({"mrn", "mrno", "pt", "pat", "patient", "patid", "pid", "acc", "accession", "accno", "dob", "birth", "born",
                           "name", "record", "chart", "ssn", "nhs", "medrec", "emr", "ehr", "hospital"})
# DICOM keyword-style ids: a stem, then ID / Number / No (`PatientID`, `AccessionNumber`, `SubjectID`,
# `MedicalRecordNumber`, `HospitalNumber`, `StudyID`); a stem is a context word or one of these.
ID_SUFFIX = re.compile(r"(?:ids?|numbers?|nos?|num|nr)$")
ID_STEMS = frozenset({"subject", "study", "person", "participant", "admission", "encounter", "visit", "member", "insurance"})
# No MRN is this long: a longer run of digits is a machine-made id (PadChest's 38- to 45-digit image
# ids), unless right after a context word.
MAX_MRN_DIGITS = 20
# A machine-made id: 16 or more letters and digits mixed (sha/hex hashes, DSB2018's 64-hex ids, Kvasir's
# 25-character ids; see _opaque) or a hex UUID; the digits inside it are no number of anyone's.
MACHINE_ID = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[A-Za-z])(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{16,}(?![A-Za-z0-9])"
                        r"|(?<![A-Za-z0-9])[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4,12}){2,}(?![A-Za-z0-9])")
YEAR_RANGE = re.compile(r"(?:19|20)\d{2}(?:19|20)\d{2}")  # 20092010: "2009-2010" with its dash lost (NHANES 20092010)
TOLL_FREE_AREA = re.compile(r"8(?:00|88|77|66|55|44|33)")  # a phone number's toll-free area code: an organisation's line
TOLL_FREE = re.compile(r"1(?:800|888|877|866|855|844|833)\d{7}")  # an organisation's toll-free number, never a person's
UNIT = re.compile(r"\s*(?:mm|cm|ml|nm|um|µm|µl|ul|mg|kg|kb|mb|bytes?|px|pixels?|voxels?|%)(?![A-Za-z])", re.IGNORECASE)
# Addresses and DOIs (`https://doi.org/10.5281/zenodo.3715942`) in citations: their numbers are no one's.
# A URL's query (`?patientid=8675309`) is still read.
URL = re.compile(r"(?:https?://|www\.)[^\s?#]+|(?<![0-9A-Za-z])(?:doi:\s*)?10\.\d{4,9}/\S+", re.IGNORECASE)
CITATION = re.compile(r"\[[a-z0-9][a-z0-9._-]*:[^\]\s]+\]")  # passage ids such as [medquad:1_CancerGov_QA/0000013_2_1/1#0], nothing else in brackets
QUOTE = re.compile(r"\"[^\"]*\"")  # quoted knowledge passages: a single name token there may be any word
# Other identifiers (HIPAA Safe Harbor): US social security numbers, phone and fax numbers and spaced NHS
# numbers (3-3-4 digits), e-mail addresses, ages over 89, and dates written month first.
SSN = re.compile(r"(?<![0-9])[0-9]{3}[- ][0-9]{2}[- ][0-9]{4}(?![0-9])")
PHONE = re.compile(r"(?<![0-9])(?:\+[0-9]{1,3}[ .-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?![0-9])|\+[0-9]{2}[ .-][0-9]{2}[ .-][0-9]{4}[ .-][0-9]{4}(?![0-9])")
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
AGE_OVER_89 = re.compile(r"(?i)(?<![0-9])(?:9[0-9]|1[0-1][0-9])[- ]?(?:years?|yrs?|y/?o)(?:[- ]old)?(?![A-Za-z])|(?i:\baged\b|\bage:)\s*(?:9[0-9]|1[0-1][0-9])(?![0-9])")
MONTH_FIRST = re.compile(rf"(?<![A-Za-z]){MONTH}\.?[-_ ]?(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,?[-_ ](?:19|20)\d{{2}}(?![0-9])"
                         rf"|(?<![0-9])(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)[ ](?:of )?{MONTH}\.?,? (?:19|20)\d{{2}}(?![0-9])")


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


def _context(word: str) -> bool:
    """Whether a word makes the number after it a patient's: a context word, a word ending in one
    (`PatientMRN`, `filename`), or a DICOM keyword-style id (`PatientID`, `AccessionNumber`, `SubjectID`)."""
    word = word.lower()
    if word in CONTEXT_WORDS or any((len(w) >= 4 or w == "mrn") and word.endswith(w) for w in CONTEXT_WORDS):
        return True
    stem = ID_SUFFIX.sub("", word)
    return stem != word and (stem in CONTEXT_WORDS or stem in ID_STEMS or any(len(w) >= 4 and stem.endswith(w) for w in CONTEXT_WORDS | ID_STEMS))


def _date_context(before: str) -> bool:
    """Whether the text before a loose date ends in a date's context word, whole or the last part of a
    camel-case word (`DOB_`, `born `, `PatientBirthDate: `, `StudyDate=`; not `update `), or in a
    context word of numbers (`pt `)."""
    m = re.search(r"([A-Za-z]+)[\s_\-:#=/.()]{0,3}$", before)
    if not m:
        return False
    last = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", m.group(1))[-1].lower()
    return m.group(1).lower() in DATE_CONTEXT or last in DATE_CONTEXT or _context(m.group(1))


def _dates(text: str) -> list[re.Match]:
    """Every date in text, in order: DATES anywhere, LOOSE_DATES right after a date's context word."""
    found = list(DATES.finditer(text))
    taken = [m.span() for m in found]
    for m in LOOSE_DATES.finditer(text):
        if _date_context(text[: m.start()]) and not any(a < m.end() and m.start() < b for a, b in taken):
            found.append(m)
    return sorted(found, key=lambda m: m.start())


def _mrn_like(text: str, start: int, end: int) -> bool:
    """Whether the run of digits text[start:end] reads as a patient's number (README "Patient data").
    Quiet: part of a dotted number (decimal, version, UID), a measurement (`123456 mm²`), a revision
    (`repo@3035455`), a code with letters joined after it (`5f3a1234567b`) or before it (`p10000032`,
    `ISIC0024306`), a dataset's sequential id joined by `_` or `-` to the word or number before it
    (`ISIC_0024306`, `amos_0004_123456`), a zero-padded counter leading a name (`0000013_2_1`,
    `00000001_000.png`), a year range that lost its dash (`20092010`), a toll-free number, and a run of
    more than MAX_MRN_DIGITS (20) digits (a machine-made id: PadChest's 38- to 45-digit image ids).
    Found: a number of any length after a context word (`_context`), joined or one or two tokens back
    (`MRN8675309`, `pt_8675309`, `MRN: 1234567`, `accession_number_12345678`, `PatientID_8675309`,
    `AccessionNumber_12345678`), and any other number that leads a name or stands alone
    (`8675309_scan`, `record 12345678`)."""
    before, after, digits = text[:start], text[end:], text[start:end]
    if YEAR_RANGE.fullmatch(digits) and 0 < int(digits[4:]) - int(digits[:4]) <= 30 or TOLL_FREE.fullmatch(digits):
        return False
    if re.search(r"[0-9][.,]$|@\s?$", before) or re.match(r"[.,][0-9]", after) or UNIT.match(after):
        return False
    joined = re.search(r"([A-Za-z]+)$", before)
    if joined and _context(joined.group(1)):
        return True
    if joined or re.match(r"[A-Za-z]", after):
        return False
    previous = re.search(r"(?:([A-Za-z0-9]+)[\s_\-:#=/.()]{1,3})?([A-Za-z0-9]+)([\s_\-:#=/.()]{1,3})$", before)
    if previous:
        words = [re.search(r"[A-Za-z]+$", t) for t in previous.group(1, 2) if t]
        if any(w and _context(w.group(0)) for w in words):
            return True
        if previous.group(3) in ("_", "-"):
            return False
    if re.search(r"[\s(=]$", before) and re.match(r"(?:$|[\s,;:)!?]|\.(?:\s|$))", after):
        return False  # a number in prose (`(n = 123456)`, `1 in 100000 people`): an MRN in text comes with its word
    return len(digits) <= MAX_MRN_DIGITS and not digits.startswith("0")


def _opaque(m: re.Match) -> str:
    """A machine-made id becomes a neutral word of its length (a number joined to it by `_` stays a
    dataset's id). Not one that reads as words and numbers run together — fewer than five alternating
    runs of letters and digits (`Quixotica19520317`, `patient8675309abcdefgh`) — nor one starting with
    a context word: those are scanned as they are."""
    token = m.group(0)
    runs = re.findall(r"[A-Za-z]+|[0-9]+", token)
    if "-" not in token and (len(runs) < 5 or _context(runs[0])):
        return token
    return "x" * len(token)


FINDING_KINDS = ("person name", "patient name token", "date", "MRN-like number", "social security number", "phone number", "e-mail address",
                 "age over 89")


def finding_kind(finding: str) -> str:
    """A finding without what it matched (`date '1952-03-17'` is `date`): safe to print and publish."""
    return next((kind for kind in FINDING_KINDS if finding.startswith(kind + " ")), "patient data")


def _has_token(token: str, text: str) -> bool:
    return re.search(rf"(?<!{LETTER}){re.escape(token)}(?!{LETTER})", text, flags=re.IGNORECASE) is not None


def patient_data_findings(text: str, names: set[str] = frozenset()) -> list[str]:
    """Patient-data patterns in one text or path: DICOM person names (`Quixotica^Zebulon`, `Øie^Åse`,
    letters of any script, outside quoted passages), tokens of the item's own patient name, dates
    (19520317, 1952-03-17, 1952-3-7, 17.03.1952, 14/03/2019, 17-MAR-1952, 17Mar1952, also joined to
    words by `_`; after a date's context word also 17.03.52, 1952_3_7, 17MAR52: `_dates`), and
    MRN-like numbers (`_mrn_like`). Passage citations (`[medquad:...]`) and machine-made ids (hashes,
    UUIDs) are not read."""
    if not text:
        return []
    plain = URL.sub(" ", CITATION.sub(" ", text))
    plain = MACHINE_ID.sub(_opaque, plain)
    unquoted = QUOTE.sub(" ", plain)
    found = [f"person name {m.group(0)!r}" for m in PERSON_NAME.finditer(plain)]
    found += [f"patient name token {t!r}" for t in sorted(names) if _has_token(t, unquoted)]
    for quote in QUOTE.findall(plain):  # quoted text (burned-in text a model read out): two of the name's tokens together
        tokens = [t for t in sorted(names) if _has_token(t, quote)]
        found += [f"patient name token {t!r}" for t in tokens] if len(tokens) >= 2 else []
    found += [f"social security number {m.group(0)!r}" for m in SSN.finditer(plain)]
    found += [f"phone number {m.group(0)!r}" for m in PHONE.finditer(plain) if not TOLL_FREE_AREA.match(re.sub(r"\D", "", m.group(0))[-10:])]
    found += [f"e-mail address {m.group(0)!r}" for m in EMAIL.finditer(plain)]
    found += [f"age over 89 {m.group(0)!r}" for m in AGE_OVER_89.finditer(plain)]
    found += [f"date {m.group(0)!r}" for m in MONTH_FIRST.finditer(plain)]
    dates = _dates(plain)
    found += [f"date {m.group(0)!r}" for m in dates]
    undated = plain
    for m in dates:
        undated = undated[: m.start()] + " " * (m.end() - m.start()) + undated[m.end():]
    found += [f"MRN-like number {m.group(0)!r}" for m in MRN.finditer(undated) if _mrn_like(undated, m.start(), m.end())]
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


def severity(config: dict, name: str, default: str = "error") -> str:
    """An expectation's severity in a source's `quality:` mapping (`error` or `warn`)."""
    return (config.get("severity") or {}).get(name, default)


# -- normalized -----------------------------------------------------------------------------------------

def normalized_frames(images: pl.DataFrame, workdir) -> dict[str, pl.DataFrame]:
    """Images, with their normalization parameters checked; masks, read back: non-empty, of the image's
    shape, and none identical to another mask of the same image. The normalized stage quarantines (or,
    under severity `warn`, drops) such masks per item before this runs, so a failure here is a bug or
    a manifest written by something else, and blocks the shard."""
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
            duplicate = mask["sha256"] in seen  # whatever the labels: one region annotated twice
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
        Expectation("every mask is non-empty", "masks", e.ExpectColumnValuesToBeInSet(column="nonempty", value_set=[True]), severity(config, "empty_mask")),
        Expectation("every mask has its image's shape", "masks", e.ExpectColumnValuesToBeInSet(column="shape_ok", value_set=[True])),
        Expectation("no two masks of an image are identical", "masks", e.ExpectColumnValuesToBeInSet(column="duplicate", value_set=[False]),
                    severity(config, "duplicate_mask")),
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
                    severity(config, "outlier", "warn")),
        Expectation("ROIs per image inside the label's range", "rois", e.ExpectColumnValuesToBeInSet(column="count_in_range", value_set=[True]),
                    severity(config, "outlier", "warn")),
        Expectation("labels are vocabulary terms (else flagged unmapped)", "rois", e.ExpectColumnValuesToBeInSet(column="mapped", value_set=[True]), "warn"),
    ])


# -- descriptions and triplets --------------------------------------------------------------------------

FACETS = FACET_NAMES


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
                    severity(config, "length")),
        Expectation("every facet written or recorded missing", "descriptions", e.ExpectColumnValuesToBeInSet(column="facets_complete", value_set=[True])),
        Expectation("no patient data in any text", "descriptions", e.ExpectColumnValuesToBeBetween(column="patient_data", max_value=0), severity(config, "patient_data")),
    ])


def triplets_frames(triplets: pl.DataFrame, modality: str, body_region: str | None, names: dict[str, set[str]]) -> dict[str, pl.DataFrame]:
    rows = []
    for t in triplets.iter_rows(named=True):
        text = (t["description"] or "").lower()
        prov = t["provenance"] or {}
        # the citation is the sources file's own text, not the data's: a journal's article number is no MRN
        fields = [t["description"], t["coarse_caption"], *(t["facets"] or {}).values(), *(r["label"] for r in t["rois"]), *(r["location"] for r in t["rois"]),
                  prov.get("source_relpath")]
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
        Expectation("no patient data in any text field", "triplets", e.ExpectColumnValuesToBeBetween(column="patient_data", max_value=0), severity(config, "patient_data")),
    ])
