"""Scoring any generator's captions: JSON Lines in, the same objects out with `faithfulness`,
`completeness`, `contradictions`, `accepted` and `scorer_version` added (`medtrinity score`).

One object a line: `{"id": ..., "facts": {"modality": "ct", "body_region": "abdomen", "labels": [{"label":
"liver lesion", "count": 1, "side": "right", "size_class": "small"}]}, "text": "...", "facets": {...}}`.
`modality` is one of the ten codes; per label `count` >= 0 (0: an image-level label), `side` left | right |
midline or `sides` (one per region), `size_class` small | medium | large, and optionally `contrast`,
`colour`, `texture`, `shape`, `margin`, `area_pct`, `location`. Everything but `modality`,
`labels[].label` and `text` is optional; unknown keys pass through. Every label is a finding (the text is to name it)
unless it says `"category": "anatomy"`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from medtrinity_core.describe.facts import Facts, LabelFacts
from medtrinity_core.describe.faithfulness import SCORER_VERSION
from medtrinity_core.describe.faithfulness.lexicon import Lexicon, lexicon
from medtrinity_core.describe.faithfulness.scorer import PATIENT_SIDED, score
from medtrinity_core.modalities import MODALITIES

SIDES = ("left", "right", "midline")
SIZE_CLASSES = ("small", "medium", "large")
TEXT_FIELDS = ("contrast", "colour", "texture", "shape", "margin", "location")
MAX_TEXT = 50_000  # characters a description may have (a model's answer runs to a few thousand)


class CaptionError(ValueError):
    """A malformed line: the message names the key."""


@dataclass(frozen=True)
class Thresholds:
    min_faithfulness: float = 1.0
    min_completeness: float = 0.6

    def accepts(self, faithfulness: float, completeness: float) -> bool:
        return faithfulness >= self.min_faithfulness and completeness >= self.min_completeness


def _location(side: str | None, modality: str) -> str | None:
    """A side as the pipeline words it: the patient's for radiology, the image's for photographs and slides."""
    if side not in ("left", "right"):
        return side
    return f"patient's {side}" if modality in PATIENT_SIDED else f"{side} part of the image"


def _label(n: int, item, lex: Lexicon, modality: str, term_of=None) -> LabelFacts:
    where = f"facts.labels[{n}]"
    if not isinstance(item, dict):
        raise CaptionError(f"{where}: must be an object with a `label`")
    name = item.get("label")
    if not isinstance(name, str) or not name.strip():
        raise CaptionError(f"{where}.label: must be a non-empty string")
    count = item.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise CaptionError(f"{where}.count: must be a whole number >= 0, not {count!r}")
    side, sides = item.get("side"), item.get("sides")
    if side is not None and side not in SIDES:
        raise CaptionError(f"{where}.side: must be one of {', '.join(SIDES)}, not {side!r}")
    if sides is not None:
        if not isinstance(sides, list) or any(s not in SIDES for s in sides):
            raise CaptionError(f"{where}.sides: must be a list of {', '.join(SIDES)}")
        side = side or (sides[0] if sides else None)
    size = item.get("size_class")
    if size is not None and size not in SIZE_CLASSES:
        raise CaptionError(f"{where}.size_class: must be one of {', '.join(SIZE_CLASSES)}, not {size!r}")
    for key in TEXT_FIELDS:
        if item.get(key) is not None and not isinstance(item[key], str):
            raise CaptionError(f"{where}.{key}: must be a string")
    area = item.get("area_pct")
    if area is not None and (isinstance(area, bool) or not isinstance(area, (int, float)) or not 0 <= area <= 100):
        raise CaptionError(f"{where}.area_pct: must be a number from 0 to 100")
    term = term_of(name) if term_of else lex.vocabulary.lookup(name)
    category = item.get("category", "finding")
    if category not in ("finding", "anatomy"):
        raise CaptionError(f"{where}.category: must be finding or anatomy, not {category!r}")
    expected = dict(term.appearance).get(modality) if term else None
    return LabelFacts(
        label=name, term=term.term if term else None, category=category,
        count=count, side=side if count else None, size_class=size if count else None, area_pct=float(area) if area is not None else None, area_mm2=None,
        volume_ml=None, location=item.get("location") or _location(side, modality), within=None, shape=item.get("shape"),
        margin=item.get("margin"), contrast=item.get("contrast"), texture=item.get("texture"), colour=item.get("colour"), method=None, model_id=None,
        confidence=None, expected=expected, sides=tuple(sides) if sides else None,
    )


def facts_of(row, lex: Lexicon | None = None, term_of=None) -> Facts:
    """The `Facts` of one line; `CaptionError` naming the key when it is malformed."""
    lex = lex or lexicon()
    if not isinstance(row, dict):
        raise CaptionError("each line must be a JSON object")
    facts = row.get("facts")
    if not isinstance(facts, dict):
        raise CaptionError("facts: missing (an object with `modality` and `labels`)")
    modality = facts.get("modality")
    if modality not in MODALITIES:
        raise CaptionError(f"facts.modality: must be one of {', '.join(MODALITIES)}, not {modality!r}")
    region = facts.get("body_region")
    if region is not None and not isinstance(region, str):
        raise CaptionError("facts.body_region: must be a string")
    labels = facts.get("labels", [])
    if not isinstance(labels, list):
        raise CaptionError("facts.labels: must be a list")
    if not isinstance(row.get("text"), str):
        raise CaptionError("text: missing (the description, a string)")
    if len(row["text"]) > MAX_TEXT:
        raise CaptionError(f"text: {len(row['text']):,} characters, more than {MAX_TEXT:,}: split it into the descriptions it holds")
    if row.get("facets") is not None and not (isinstance(row["facets"], dict) and all(isinstance(v, str) or v is None for v in row["facets"].values())):
        raise CaptionError("facets: must be an object of strings")
    parsed = tuple(_label(n, item, lex, modality, term_of) for n, item in enumerate(labels))
    return Facts(image_id=str(row.get("id", "")), modality=modality, body_region=region or None, slice_axis=None, slice_index=None,
                 annotated=any(f.count for f in parsed), labels=parsed)


def scored(row: dict, thresholds: Thresholds = Thresholds(), lex: Lexicon | None = None, facts: Facts | None = None) -> dict:
    """The row with its scores added (`facts`: the row's, when already read)."""
    lex = lex or lexicon()
    s = score(facts or facts_of(row, lex), row["text"], row.get("facets"), lex)
    return {**row, "faithfulness": s.faithfulness, "completeness": s.completeness, "contradictions": s.contradictions, "missing": s.missing,
            "annotation_suspect": s.annotation_suspect, "accepted": thresholds.accepts(s.faithfulness, s.completeness), "scorer_version": SCORER_VERSION}


def read_rows(lines: Iterable[str], name: str, lex: Lexicon, term_of=None) -> list[tuple[dict, Facts]]:
    """Every non-blank line as (object, facts), all read before any is scored: the first malformed line
    raises `CaptionError` "NAME:LINE: message" and nothing is written."""
    out = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise CaptionError(f"{name}:{n}: not JSON ({exc.msg} at column {exc.colno})") from None
        except (ValueError, RecursionError) as exc:  # NaN, a 5,000-digit number, nesting too deep
            raise CaptionError(f"{name}:{n}: not JSON a line can hold ({str(exc).splitlines()[0][:120] or type(exc).__name__})") from None
        try:
            out.append((row, facts_of(row, lex, term_of)))
        except CaptionError as exc:
            raise CaptionError(f"{name}:{n}: {exc}") from None
    return out


def _no_constant(word: str):
    raise ValueError(f"{word} is not JSON")


def lines_of(data: bytes, name: str) -> list[str]:
    """A JSON Lines file's lines: UTF-8 (a byte-order mark allowed), split at line feeds only (JSON strings may
    hold U+2028 raw), carriage returns dropped."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CaptionError(f"{name}: not UTF-8 (byte {exc.start})") from None
    return [line.rstrip("\r") for line in text.split("\n")]


def dumps(row: dict) -> str:
    """One output line; U+2028/U+2029 escaped so that every JSON Lines reader splits it as one line."""
    return json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def score_rows(rows: list[tuple[dict, Facts]], thresholds: Thresholds, lex: Lexicon) -> Iterator[dict]:
    for row, facts in rows:
        yield scored(row, thresholds, lex, facts)
