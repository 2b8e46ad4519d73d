"""Faithfulness: a description's claims held to the facts its generator was given.

Required claims: the modality; the organ when the source states one; for each finding, that it is
named, its side when one was measured, and its size class. Score = supported required claims / required
claims, so a text that states nothing scores 0. Claims stated and contradicted by the facts — another
modality, an organ outside the image, the other side, another size, a wrong count or share of the image,
a finding that is not on the image — are listed as `{facet, claim, fact}`. The knowledge facet (quoted
passages) is not held to the image; the relationships facet is not read for sides and sizes (its
"left of" relates two regions). Synonyms are understood: "computed tomography", "MR", "sinistral",
"L kidney", "renal", "tiny", "two polyps".

Annotations get the same scrutiny: where the vocabulary expects a finding to look brighter or darker
for this modality and the measured contrast says the opposite, `annotation_suspect` lists it (label,
expected, measured); that flag does not change the score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from medtrinity_core.describe.facts import Facts, LabelFacts
from medtrinity_core.knowledge.vocabulary import normal_form

MODALITY_WORDS = {
    "ct": r"\bct\b|computed tomograph|\bcat scan",
    "mri": r"\bmri?\b|magnetic resonance",
    "xray": r"x-?ray|radiograph|plain film",
    "ultrasound": r"ultrasound|sonograph|\bechograph|\bsonogram",
    "dermoscopy": r"dermoscop|dermatoscop",
    "endoscopy": r"endoscop|colonoscop|gastroscop",
    "fundus": r"fundus|fundoscop|retinal photograph",
    "histopathology": r"histopatholog|histolog|\bh&e\b|whole[- ]slide",
    "pet": r"\bpet\b|positron emission",
    "microscopy": r"microscop",
}
COMPATIBLE = {"pet": {"ct"}, "histopathology": {"microscopy"}, "microscopy": {"histopathology"}, "fundus": set(), "endoscopy": set()}
ORGANS = {
    "brain": r"\bbrain\b|cerebr|intracranial",
    "lung": r"\blungs?\b|pulmonary",
    "liver": r"\bliver\b|hepatic",
    "kidney": r"\bkidneys?\b|\brenal\b",
    "heart": r"\bheart\b|cardiac",
    "breast": r"\bbreasts?\b|mammar",
    "colon": r"\bcolon\b|colonic|colorectal|large intestine|large bowel",
    "skin": r"\bskin\b|cutaneous|dermal",
    "retina": r"\bretina\b|retinal",
    "prostate": r"\bprostat",
    "spleen": r"\bspleen\b|splenic",
    "pancreas": r"\bpancrea",
    "stomach": r"\bstomach\b|gastric",
    "bladder": r"\bbladder\b",
    "uterus": r"\buter(us|ine)\b",
    "thyroid": r"\bthyroid\b",
    "esophagus": r"\besophag|\boesophag",
}
# An organ stated inside a region the source names is no contradiction (a liver in the abdomen).
REGION_HOLDS = {
    "abdomen": {"liver", "kidney", "spleen", "pancreas", "stomach", "colon", "bladder", "lung", "heart"},
    "chest": {"lung", "heart", "breast", "esophagus"},
    "thorax": {"lung", "heart", "breast", "esophagus"},
    "pelvis": {"bladder", "prostate", "uterus", "colon"},
    "cell nuclei": {"breast", "skin", "colon", "lung"},
}
SIZES = {"small": r"small|tiny|little|minute|punctate", "medium": r"medium|moderate|intermediate|mid-sized", "large": r"large|big|extensive|sizeable|huge|massive"}
LEFT = re.compile(r"\b(?i:left|sinistral|sinister|lt)\b|\bL\b")  # "L kidney": the capital letter only
RIGHT = re.compile(r"\b(?i:right|dextral|dexter|rt)\b|\bR\b")
MIDLINE = re.compile(r"\b(?i:midline|central|centrally|median|centre|center)\b")
NUMBER_WORDS = {w: n for n, w in enumerate(("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"))}
NUMBER = r"(?P<n>\d+|a single|single|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|multiple|several|many|numerous)"
CLAIM_FACETS = ("modality", "organ_tissue", "roi_location", "colour_texture")
BRIGHTER = ("brighter", "hyper", "more radiopaque", "more fdg-avid", "redder", "opacity")
DARKER = ("darker", "hypo", "more radiolucent", "less fdg-avid", "anechoic")


@dataclass
class Score:
    faithfulness: float
    required: int
    supported: int
    contradictions: list[dict] = field(default_factory=list)
    annotation_suspect: list[dict] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _names_of(label: str, term: str | None) -> tuple[str, ...]:
    """How a text may name a label: as written, its canonical term and synonyms, longest first."""
    from medtrinity_core.knowledge.vocabulary import load_vocabulary

    names = {normal_form(label)}
    if term:
        names.add(term)
        found = load_vocabulary().lookup(term)
        names.update(normal_form(s) for s in (found.synonyms if found else ()))
    return tuple(sorted((n for n in names if len(n) > 2), key=lambda n: (-len(n), n)))


def _names(f: LabelFacts) -> tuple[str, ...]:
    return _names_of(f.label, f.term)


def _words(name: str) -> str:
    return r"[\s_+\-]+".join(re.escape(w) for w in name.split())


@lru_cache(maxsize=4096)
def _pattern(names: tuple[str, ...]) -> re.Pattern:
    return re.compile(rf"\b(?:{'|'.join(_words(n) for n in names)})(?:s|es)?\b", flags=re.IGNORECASE)


def _mentions(text: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    if not names:
        return []
    return [(m.start(), m.end()) for m in _pattern(names).finditer(text)]


def _sentences(text: str) -> list[tuple[int, str]]:
    out, start = [], 0
    for m in re.finditer(r"(?<=[.!?;])\s+", text):
        out.append((start, text[start:m.start()]))
        start = m.end()
    out.append((start, text[start:]))
    return [(s, t) for s, t in out if t.strip()]


def _owner(sentence: str, start: int, end: int, here: dict[str, list[tuple[int, int]]]) -> str | None:
    """The label a word at sentence[start:end] qualifies: one named right after it ("left kidney",
    "small, round polyp"), else the sentence's subject, the label named first."""
    following = [(a, label) for label, spans in here.items() for a, _ in spans if a >= end and len(sentence[end:a].split()) <= 2]
    if following:
        return min(following)[1]
    return min((spans[0][0], label) for label, spans in here.items())[1]


def _count_of(word: str) -> int | None:
    word = word.lower()
    if word.isdigit():
        return int(word)
    if word in ("a single", "single"):
        return 1
    if word in ("multiple", "several", "many", "numerous"):
        return -1  # two or more
    return NUMBER_WORDS.get(word)


def _facet_texts(text: str, facets: dict | None) -> tuple[str, str]:
    """(claim text, side/size text): the facets held to the image, or the whole text when unparsed."""
    if not facets:
        return text, text
    claim = " ".join(facets.get(k) or "" for k in (*CLAIM_FACETS, "relationships"))
    return claim, " ".join(facets.get(k) or "" for k in CLAIM_FACETS)


def _modality_claims(facts: Facts, text: str, contradictions: list[dict]) -> int:
    low = text.lower()
    own = bool(re.search(MODALITY_WORDS[facts.modality], low))
    for other, pattern in MODALITY_WORDS.items():
        if other != facts.modality and other not in COMPATIBLE.get(facts.modality, set()) and re.search(pattern, low):
            contradictions.append({"facet": "modality", "claim": re.search(pattern, low).group(0), "fact": facts.modality})
    return int(own)


ORGAN_PATTERNS = {organ: (tuple(re.findall(r"[a-z]{3,}", re.sub(r"\\[a-z]|[a-z]\?", " ", pattern))), re.compile(pattern)) for organ, pattern in ORGANS.items()}


def _organs_in(text: str) -> dict[str, str]:
    """Organ -> the first words naming it in `text` (lower case). A literal stem is looked for first: the
    regular expression runs only where one occurs."""
    low, found = text.lower(), {}
    for organ, (stems, pattern) in ORGAN_PATTERNS.items():
        if any(stem in low for stem in stems):
            hit = pattern.search(low)
            if hit:
                found[organ] = hit.group(0)
    return found


@lru_cache(maxsize=4096)
def _allowed_organs(region: str, names: tuple[str, ...]) -> frozenset[str]:
    """The organs a description of this image may name: the region's, those it holds, the labels'."""
    allowed = set(_organs_in(region)) | REGION_HOLDS.get(region, set())
    for name in names:
        allowed |= set(_organs_in(name))
    return frozenset(allowed)


def _organ_claims(facts: Facts, text: str, contradictions: list[dict]) -> tuple[int, int]:
    """(required, supported) for the organ; organs outside the image are contradictions."""
    region = (facts.body_region or "").lower()
    if not region:
        return 0, 0
    allowed = _allowed_organs(region, tuple(sorted({n for f in facts.labels for n in (f.label, f.term or "")})))
    stated = _organs_in(text)
    for organ, words in stated.items():
        if organ not in allowed:
            contradictions.append({"facet": "organ_tissue", "claim": words, "fact": facts.body_region})
    return 1, int(region in text.lower() or bool(set(stated) & set(_organs_in(region))))


def _labelled_sentences(facts: Facts, text: str) -> list[tuple[str, dict[str, list[tuple[int, int]]]]]:
    """Each sentence with the labels it names (label -> spans within it); a sentence naming none
    ("The largest is medium...") keeps the previous sentence's subject."""
    spans = sorted((a, b, f.label) for f in facts.labels for a, b in _mentions(text, _names(f)))
    out, subject, i = [], None, 0
    for start, sentence in _sentences(text):
        end = start + len(sentence)
        while i < len(spans) and spans[i][0] < start:
            i += 1
        here: dict[str, list[tuple[int, int]]] = {}
        j = i
        while j < len(spans) and spans[j][0] < end:
            a, b, label = spans[j]
            here.setdefault(label, []).append((a - start, b - start))
            j += 1
        if not here and subject:
            here = {subject: [(0, 0)]}
        subject = min((v[0][0], k) for k, v in here.items())[1] if here else None
        out.append((sentence, here))
    return out


def _label_claims(facts: Facts, claim_text: str, place_text: str, contradictions: list[dict]) -> tuple[int, int]:
    required = supported = 0
    sentences = _labelled_sentences(facts, place_text)
    for f in facts.findings:
        required += 1
        named = bool(_mentions(claim_text, _names(f)))
        supported += named
        if not f.count:
            continue  # an image-level label: nothing measured to place or size
        sides, sizes = set(), set()
        for sentence, here in sentences:
            if f.label not in here:
                continue
            for pattern, side in ((LEFT, "left"), (RIGHT, "right"), (MIDLINE, "midline")):
                for m in pattern.finditer(sentence):
                    if _owner(sentence, m.start(), m.end(), here) == f.label:
                        sides.add(side)
            for size, pattern in SIZES.items():
                for m in re.finditer(rf"\b(?:{pattern})\b", sentence, flags=re.IGNORECASE):
                    if _owner(sentence, m.start(), m.end(), here) == f.label:
                        sizes.add(size)
            for m in re.finditer(r"(?P<pct>\d+(?:\.\d+)?)\s*% of (?:the )?image", sentence):
                if _owner(sentence, m.start(), m.end(), here) == f.label and f.area_pct is not None:
                    stated = float(m.group("pct"))
                    if abs(stated - f.area_pct) > max(0.5, 0.2 * f.area_pct):
                        contradictions.append({"facet": "roi_location", "claim": f"{f.label}: {m.group(0)}", "fact": f"{f.area_pct}% of the image"})
            names = "|".join(_words(n) for n in _names(f))
            for m in re.finditer(rf"\b{NUMBER}\s+(?:regions? of (?:the )?|[\w-]+,?\s+){{0,3}}(?:{names})(?:s|es)?\b", sentence, flags=re.IGNORECASE):
                n = _count_of(m.group("n"))
                if n is not None and not (n == f.count or (n == -1 and f.count > 1)):
                    contradictions.append({"facet": "roi_location", "claim": m.group(0), "fact": f"{f.count} region(s) of {f.label}"})
        stated = sides & {"left", "right"}
        if f.side in ("left", "right"):
            required += 1
            supported += stated == {f.side}
        crossing = "across the midline" in (f.location or "")
        wrong = (stated - {f.side}) | ({"midline"} & sides if f.side in ("left", "right") and not crossing else set())
        if f.side and wrong:
            contradictions.append({"facet": "roi_location", "claim": f"{f.label}: {', '.join(sorted(wrong))}", "fact": f.location})
        if f.size_class:
            required += 1
            supported += sizes == {f.size_class}
            if sizes - {f.size_class}:
                contradictions.append({"facet": "roi_location", "claim": f"{f.label}: {', '.join(sorted(sizes - {f.size_class}))}", "fact": f.size_class})
    return required, supported


@lru_cache(maxsize=1)
def _finding_names() -> tuple[dict[str, str], re.Pattern]:
    """Every vocabulary finding's names (canonical term and written-out synonyms, and their plurals) ->
    (the name, its term), and one pattern finding any of them."""
    from medtrinity_core.knowledge.vocabulary import load_vocabulary

    owner: dict[str, tuple[str, str]] = {}
    for term in load_vocabulary().terms:
        if term.category == "finding":
            for name in {term.term, *(normal_form(s) for s in term.synonyms if len(s) > 3)}:
                for said in (name, name + "s", name + "es"):
                    owner.setdefault(normal_form(said), (name, term.term))
    names = tuple(sorted({name for name, _ in owner.values()}, key=lambda n: (-len(n), n)))
    return owner, _pattern(names)


def _phantom_findings(facts: Facts, text: str, contradictions: list[dict]) -> None:
    """A vocabulary finding named in the text that is not on the image."""
    owner, pattern = _finding_names()
    low = re.sub(r"[_+\-\s]+", " ", text.lower())
    if not any(said in low for said in owner):
        return
    present = {f.term or normal_form(f.label) for f in facts.labels}
    present_names = {n for f in facts.labels for n in _names(f)}
    for m in pattern.finditer(text):
        name, term = owner.get(normal_form(m.group(0)), (None, None))
        if name is None or term in present or name in present_names or any(name in p for p in present_names):
            continue
        contradictions.append({"facet": "roi_location", "claim": m.group(0), "fact": "not annotated on this image"})
        return


def annotation_suspects(facts: Facts) -> list[dict]:
    out = []
    for f in facts.findings:
        if not (f.expected and f.contrast):
            continue
        expected, measured = f.expected.lower(), f.contrast.lower()
        expects_bright = any(w in expected for w in BRIGHTER) and not any(w in expected for w in DARKER)
        expects_dark = any(w in expected for w in DARKER) and not any(w in expected for w in BRIGHTER)
        if (expects_bright and any(w in measured for w in DARKER)) or (expects_dark and any(w in measured for w in BRIGHTER)):
            out.append({"label": f.label, "expected": f.expected, "measured": f.contrast})
    return out


def score(facts: Facts, text: str, facets: dict | None = None) -> Score:
    claim_text, place_text = _facet_texts(text, facets)
    contradictions: list[dict] = []
    required, supported = 1, _modality_claims(facts, claim_text, contradictions)
    r, s = _organ_claims(facts, claim_text, contradictions)
    required, supported = required + r, supported + s
    r, s = _label_claims(facts, claim_text, place_text, contradictions)
    required, supported = required + r, supported + s
    _phantom_findings(facts, place_text, contradictions)
    return Score(round(supported / required, 4), required, supported, contradictions, annotation_suspects(facts))
