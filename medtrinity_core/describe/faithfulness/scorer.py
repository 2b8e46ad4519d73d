"""Faithfulness and completeness of one description against the facts its generator was given.

The reader finds, in the text as written: modality and technique words; organs, organ parts and body
regions; findings (by label, vocabulary synonym, a kind of the label's term, or a generic head such as
"lesion", "mass", "focus" bound to the image's finding when the binding is unambiguous); and the words
that qualify a finding: side, size class, count, appearance (contrast direction, colour) and the share
of the image. Each qualifier is bound to the finding it qualifies (the next finding within a few words,
else the previous one in its sentence, else the previous sentence's subject). Negated and uncertain
findings come from NegEx (see `reader`).

- faithfulness = 1 - contradicted claims / claims made (1.0 when the text claims nothing false);
- completeness = covered / required facts (modality; organ when the source states one; per finding: named,
  its side when measured, its size class).

Each contradiction: `{type, facet, claim, fact, span, by}` with `type` one of TYPES and `span` the
[start, end) of the claim in code points of the text."""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import lru_cache

from medtrinity_core.describe.facts import Facts, LabelFacts
from medtrinity_core.describe.faithfulness.lexicon import ALL, Lexicon, Matcher, _cased, lexicon, longest
from medtrinity_core.describe.faithfulness.names import initialism, loose_find
from medtrinity_core.describe.faithfulness.reader import parse
from medtrinity_core.knowledge.vocabulary import normal_form

FACET = {"modality": "modality", "region": "organ_tissue", "side": "roi_location", "size": "roi_location", "count": "roi_location",
         "absent_finding": "roi_location", "phantom_finding": "roi_location", "appearance": "colour_texture"}
PATIENT_SIDED = frozenset({"ct", "mri", "xray", "ultrasound", "pet"})  # sides in the patient's terms
SIZE_ORDER = {"small": 0, "medium": 1, "large": 2}

LEFT = re.compile(r"(?<![\w/])(?:(?i:left(?:-sided)?|sinistral|sinister|lt)|L)(?![\w/])")
RIGHT = re.compile(r"(?<![\w/])(?:(?i:right(?:-sided)?|dextral|dexter|rt)|R)(?![\w/])")
CENTRAL = re.compile(r"\b(?i:centre|center|central|centrally|centred|centered|middle)\b")
MIDLINE = re.compile(r"\b(?i:midline|mid-line)\b")
BILATERAL = re.compile(r"\b(?i:bilateral(?:ly)?|bilat|b/l|bibasal|bibasilar|(?:both|each) (?:sides?|lungs?|kidneys?|breasts?|hemithora(?:ces|x)|hemispheres?|lobes?|eyes?|lung bases|lower lobes|upper lobes|(?:lower |upper |mid |middle )?zones|bases|apices|ovar(?:y|ies)|axillae|axilla))\b")
RELATION_AFTER = re.compile(r"^\s*(?:of|to)\s+(?:the\s+)?(?!midline)", re.IGNORECASE)  # "left of the kidney": a relation, not a side
RELATION_BEFORE = re.compile(r"(?:\bto the|\bto its|\bto|\bfrom)\s*$", re.IGNORECASE)
IMAGE_SIDE_AFTER = re.compile(r"^[\s-]*(?:[\w-]+\s+){0,2}?(?:side|half|part|portion|edge|border|corner|aspect|margin|periphery|quadrant)?\s*(?:of\s+)?(?:the\s+)?"
                              r"(?:image|frame|picture|screen|field|view|slide|photograph|photo|panel|film|micrograph)\b", re.IGNORECASE)
IMAGE_SIDE_BEFORE = re.compile(r"(?:image|frame|picture|screen|field|slide|photograph|panel)(?:'s)?\s+(?:(?:upper|lower)\s+)?$", re.IGNORECASE)
NUMBER_WORDS = {w: n for n, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                                            "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty"))}
NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100})
NUMBER_WORDS.update({f"{tens}{joint}{unit}": NUMBER_WORDS[tens] + NUMBER_WORDS[unit] for tens in ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
                     for unit in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine") for joint in ("-", " ")})  # "forty-two"
INF = 10**9
COUNT_WORDS = {  # (low, high) regions a word claims
    "a dozen": (10, 14), "dozen": (10, 14), "two dozen": (18, 30), "three dozen": (30, 42), "a couple of dozen": (18, 30), "a few dozen": (24, 80),
    "a single": (1, 1), "single": (1, 1), "solitary": (1, 1), "a solitary": (1, 1), "isolated": (1, 1), "an isolated": (1, 1), "unifocal": (1, 1),
    "a couple of": (2, 3), "a pair of": (2, 2), "a few": (2, 6), "few": (2, 6), "several": (2, INF), "multiple": (2, INF), "numerous": (2, INF),
    "many": (2, INF), "various": (2, INF), "scattered": (2, INF), "multifocal": (2, INF), "multi-focal": (2, INF), "a cluster of": (2, INF), "cluster of": (2, INF),
    "clusters of": (2, INF), "a group of": (2, INF), "groups of": (2, INF), "innumerable": (10, INF), "countless": (10, INF), "myriad": (10, INF),
    "dozens of": (12, INF), "scores of": (20, INF), "hundreds of": (100, INF), "another": (2, INF), "a second": (2, INF), "second": (2, INF),
    "additional": (2, INF), "an additional": (2, INF), "both": (2, 2), "a further": (2, INF), "satellite": (2, INF),
}
QUALIFIERS = r"(?:(?P<q>approximately|approx\.?|about|around|roughly|some|nearly|almost|~|over|more than|greater than|at least|fewer than|less than|up to|>|<|≥|≤)\s*)?"
COUNT = re.compile(r"(?<![\w.-])" + QUALIFIERS + r"(?P<n>\d+|" + "|".join(sorted((re.escape(w) for w in [*NUMBER_WORDS, *COUNT_WORDS]), key=len, reverse=True)) + r")(?![\w-])", re.IGNORECASE)
NOT_COUNT_BEFORE = re.compile(r"(?:grade|segment|segments|level|type|stage|class|score|category|bi-?rads|pi-?rads|tirads|ti-?rads|gleason|fig\.?|figure|slice|image|panel|series|zone|"
                              r"lobe|t|n|m|s|l|c|v|vi|vii|viii|cn|no\.|number|day|week|year|month|version|of|than)\s*$", re.IGNORECASE)
UNITS = re.compile(r"^\s*-?\s*(?:(?:mm|cm|m|ml|cc|x|by|years?|yrs?|months?|weeks?|days?|hours?|o'clock|degrees?|mg|sec|s|min|kg|g|μm|um|µm|times|fold|point|of)\b|%|×|°)", re.IGNORECASE)
PERCENT = re.compile(r"(?P<pct>\d+(?:\.\d+)?)\s*% of (?:the )?(?:image|field|frame|slide|section|picture|view)(?![\s-]*(?:diagonal|width|height|side|length|diameter|distance))", re.IGNORECASE)
MODIFIER_GAP = 4  # words between a qualifier and the finding it precedes
HEDGED_CAN = r"can(?!\s+(?:(?:also|clearly|just|now|still)\s+)?(?:be\s+)?(?:see|seen|identif\w*|not\w*|observ\w*|appreciat\w*|visuali\w*|spot\w*|make out))"
GENERIC = re.compile(r"\b(?:" + HEDGED_CAN + r"|rarely|seldom|never|occasionally|may|might|could|often|typically|usually|commonly|frequently|tends? to|known to|expected|generally|in general|characteristically|classically|"
                     r"such as|e\.g\.|would|should|if|unlike|whereas typical|most cases|in many cases|most commonly|are caused by|is caused by)\b", re.IGNORECASE)
NOT_CLAIMS = re.compile(r"\b(?:recommend\w*|advis\w*|correlat\w*|follow[- ]?up|further (?:evaluation|assessment|characteri[sz]ation|imaging|work-?up)|"
                        r"consider\w*|suggested|is suggested|characteri[sz]e|is needed|are needed|required|warrant\w*|to confirm|confirmation|referr\w*|"
                        r"if clinically|clinical correlation|differential|versus|vs\.?|no need|confirm\w*|rec|urgent|referral|refer|pending|awaited|sent for|"
                        r"next step|would help|could help|may help|might help|can help|will help|(?:would|could|may|might) be (?:helpful|useful|needed)|better|for histolog\w+|"
                        r"biops(?:y|ies) (?:taken|were taken|obtained|for)|biops(?:y|ies) (?:would|will|is|are|could|should))\b", re.IGNORECASE)  # advice: the whole sentence is no claim
CONTEXT = re.compile(r"\b(?:(?<!no )(?<!without )compar\w*|(?<!no )prior|(?<!no )previous\w*|history of|known(?! as)|year[- ]old|patient with|underwent|has had|had undergone|in the past|status post|s/p|unlike|"
                     r"rather than|instead of|not an?|sentinel)\b", re.IGNORECASE)  # history and comparison: what follows them is no claim about this image
INTERPRETIVE = re.compile(r"\b(?:looks? like|appears? to be|seems? to be|classic(?:al)? (?:for|of)|typical (?:for|of)|characteristic of|in keeping with|consistent with|c/w|"
                          r"compatible with|suggest(?:s|ing|ive of)|indicat(?:es|ing|ive of)|represent(?:s|ing)?|diagnostic of|points? toward|pointing to|favou?r(?:s|ing)?|"
                          r"likely|probabl[ey]|presumabl[ey]|so there(?:'s| is)|which means|diagnosed as|diagnosis of|in favou?r of|impression)\b", re.IGNORECASE)
ELSEWHERE = re.compile(r"\b(?:otherwise|remainder|rest of|remaining|elsewhere|background|distant|around it|around the lesion|between|neighbou?ring|other|contralateral|opposite|another|additional|further|new|"
                       r"nearby|apart from|besides|except)\b", re.IGNORECASE)
NORMAL = re.compile(r"\b(?:(?-i:NED)|no evidence of (?:[\w-]+\s+){0,2}disease|no (?:[\w-]+\s+){0,2}(?:disease|malignancy)|nl|unremarkable|normal(?:-appearing| in appearance| appearing)?|within normal limits|no (?:acute |significant |focal |definite |obvious |visible |detectable )*"
                    r"(?:abnormalit(?:y|ies)|findings?|pathology|lesions?)|no (?:focal |abnormal |significant |suspicious |increased |pathological |pathologic )+(?:hypermetabolism|uptake|FDG uptake|tracer uptake|avidity|enhancement)|"
                    r"(?:is|are|appears?) clear|clear (?:lungs|lung fields)|healthy)\b", re.IGNORECASE)
GLOBAL_DENIAL = re.compile(r"(?!.*\b(?:distant|residual|recurrent|active|other|extra-?\w+)\b)"
                           r"(?:(?-i:NED)|no evidence of .*disease|no .*(?:disease|malignancy|abnormalit(?:y|ies)|findings?|pathology))", re.IGNORECASE)
DENIAL_QUALIFIERS = {"metastatic": ("metasta", "secondar"), "nodal": ("node", "nodal", "lymph"), "osseous": ("bone", "osse", "skelet"), "bony": ("bone", "osse"),
                     "skeletal": ("bone", "skelet"), "hepatic": ("liver", "hepat"), "pulmonary": ("lung", "pulmon")}  # "no nodal disease" denies nodal findings only
NORMAL_NOT_DENIAL = re.compile(r"^\s*(?:-?\s*sized?|in size|size|caliber|calibre|thickness|position|contour|shape|echogenicity|morphology|dimensions?|volume|range|variant|anatomy|structure)\b", re.IGNORECASE)
STUDY = re.compile(r"\b(?:study|examination|exam|scan|image|images|radiograph|film|slide|photograph|picture)\b", re.IGNORECASE)
RELATIVE_PLACE = re.compile(r"\s*,?\s*(?:which|that)\s+(?:seems?|appears?|is|are)?\s*(?:to\s+)?(?:be\s+)?(?:sit|sits|lie|lies|located|situated|arise|arises|arising|centred|centered)\b", re.IGNORECASE)
LINK_BEFORE_PLACE = re.compile(r"(?:\b(?:in|within|of|at|involving|on|from|inside|into|along|near|arising from|occupying|over|overlying))\s+(?:the\s+|its\s+|an?\s+)?(?:[\w-]+\s+){0,2}$", re.IGNORECASE)


@dataclass
class Score:
    faithfulness: float
    completeness: float
    claims: int
    required: int
    covered: int
    contradictions: list[dict] = field(default_factory=list)
    annotation_suspect: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # the required facts the text does not state ("side of liver tumor")


@dataclass
class Mention:
    start: int
    end: int
    kind: str  # label | anatomy | finding | head | weak
    merged: bool = False  # a weak head standing for the finding after it ("regions of liver tumor")
    label: int | None = None  # index into the facts' labels this mention names (None: another finding, or unbound)
    term: str | None = None
    negated: bool = False
    uncertain: bool = False


def _term_of(f: LabelFacts, lex: Lexicon) -> str | None:
    """The label's vocabulary term; for a label the vocabulary does not name, the finding its words name
    ("stroke lesion" is a stroke, "intraparenchymal hemorrhage" a haemorrhage): the longest, then the last."""
    if f.term:
        return f.term
    def inner() -> str | None:
        hits = lex.findings.find(f.label.replace("_", " "))
        return max(hits, key=lambda h: (h[1] - h[0], h[0]))[2] if hits else None
    return _memo(lex, "term_of", f.label, inner)


def _memo(lex: Lexicon, kind: str, key, compute):
    """A per-label result computed once per lexicon (kept on the lexicon, at most 20,000 a kind)."""
    memo = lex.memo.setdefault(kind, {})
    if key not in memo:
        if len(memo) > 20000:
            memo.clear()
        memo[key] = compute()
    return memo[key]


def _ends_other_term(text: str, a: int, b: int, f: LabelFacts, lex: Lexicon) -> bool:
    """A label's head word ("cells") that is the last word of another vocabulary term ("white blood cells"
    beside a red-blood-cell label)."""
    said = normal_form(text[a:b])
    if len(said.split()) != 1 or said.rstrip("s") == normal_form(f.label).rstrip("s"):
        return False
    before = text[max(0, a - 40):a].split()
    own = lex.vocabulary.lookup(_term_of(f, lex) or f.label)
    for n in (1, 2, 3):
        term = lex.vocabulary.lookup(" ".join(before[-n:]) + " " + text[a:b]) if len(before) >= n else None
        if term is not None and (own is None or term.term != own.term) \
                and not any(normal_form(n) in normal_form(f.label.replace("_", " ")) for n in (term.term, *term.synonyms)):
            return True  # not "red blood cell" of a label "infected red blood cell"
    return False


def _distinct(lex: Lexicon, a: str, b: str, label: str = "") -> bool:
    """Two vocabulary findings that are different things though they share a head: of different organs
    (pericardial and pleural effusion) or told apart by opposite words (hard and soft exudates; the
    label's own words count for its term)."""
    oa, ob = lex.organ_of.get(a), lex.organ_of.get(b)
    if oa and ob and oa != ob:
        return True
    wa, wb = set(normal_form(a).split()), set(normal_form(b).split()) | set(normal_form(label).replace("_", " ").split())
    return any({x, y} <= (wa | wb) and not {x, y} <= wa and not {x, y} <= wb for x, y in OPPOSITES)


OPPOSITES = (("positive", "negative"), ("hard", "soft"), ("red", "white"), ("benign", "malignant"), ("acute", "chronic"), ("primary", "secondary"), ("intra", "extra"))


def _label_names(f: LabelFacts, lex: Lexicon) -> frozenset[str]:
    """_names, computed once per label and lexicon."""
    return _memo(lex, "names", (f.label, f.term), lambda: frozenset(_names(f, lex)))


def _names(f: LabelFacts, lex: Lexicon) -> set[str]:
    """How a text may name a label: as written, its term and the term's synonyms, and its last word
    (a head such as "lesion", "cyst", "exudates") when that is no organ."""
    names = {normal_form(f.label)}
    term = lex.vocabulary.lookup(_term_of(f, lex) or f.label)
    if term is not None:
        names |= {term.term if not _cased(term.term) else term.term, *(s if _cased(s) else normal_form(s) for s in term.synonyms)}
    head = _head(f.label)
    if head and len(normal_form(f.label).split()) > 1 and (not lex.organs_in(head) or _cellular(head, lex)):
        names.add(head)  # "exudates" of "hard exudates"; "nuclei" of "Ki-67 positive nuclei"
    if normal_form(f.label).endswith("itis") and not normal_form(f.label).startswith(("non ", "no ")):
        names |= {"inflammation", "inflammatory change", "inflammatory changes"}  # oesophagitis, colitis: "no signs of inflammation"
    for name in list(names):
        short = initialism(name) if not normal_form(name).startswith(("non ", "no ")) else None
        if short and len(short) >= 3 and not lex.known(short):  # "WBC", "AFB"; not "US" of "urinary stone"; not "PE" (pericardial effusion or pulmonary embolism)
            names.add(short)
    return {n for n in names if len(n) > 2 or _cased(n)}


def _qualifier_inside(said: str, lex: Lexicon) -> bool:
    """A loose naming may not swallow a side, a size or a count ("opacity in the left lung")."""
    return bool(LEFT.search(said) or RIGHT.search(said) or BILATERAL.search(said) or re.search(r"\d", said) or lex.sizes.find(said) or COUNT.search(said)
                or re.search(r"\b(?:no|not|without|non|nor|absent|normal|never)\b|n't\b", said, re.IGNORECASE))  # "the mediastinum is not widened"


def _cellular(word: str, lex: Lexicon) -> bool:
    terms = [lex.vocabulary.lookup(o) for o in lex.organs_in(word)]
    return bool(terms) and all(t is not None and t.system == "cellular" for t in terms)


def _organs_of(f: LabelFacts, lex: Lexicon) -> set[str]:
    """The organs a label names; a bare generic word ("polyp", "nodule", "mass") names none, though the
    vocabulary files it under one organ's finding (a polyp may be gastric)."""
    if BARE_LESION.fullmatch(normal_form(f.label.replace("_", " "))):
        return set()
    organs = lex.organs_in(f.label)
    if _term_of(f, lex):
        organs |= lex.organs_in(_term_of(f, lex))
    return organs


def _sides_of(f: LabelFacts) -> set[str]:
    if f.sides:
        return {s for s in f.sides if s}
    return {f.side} if f.side else set()


MASKED_FACETS = ("relationships", "knowledge")  # read for nothing: relations between regions ("left of the aorta") and quoted passages


def _masked(text: str, facets: dict | None) -> str:
    """The text with the facets not held to the image's facts blanked out (offsets kept): the knowledge
    facet's quoted passages, and the relationships facet, whose "left of" and "% of the image diagonal"
    relate two regions (claims the scorer does not check)."""
    for name in MASKED_FACETS:
        part = (facets or {}).get(name)
        if part and part in text:
            i = text.index(part)
            text = text[:i] + " " * len(part) + text[i + len(part):]
    return text


class Reading:
    """One text read against one image's facts."""

    def __init__(self, facts: Facts, text: str, facets: dict | None, lex: Lexicon):
        self.facts, self.text, self.lex = facts, _masked(text, facets), lex
        self.findings = [i for i, f in enumerate(facts.labels) if f.is_finding]
        self.organs = {i: _organs_of(facts.labels[i], lex) for i in range(len(facts.labels))}
        self.region = lex.region(facts.body_region)
        self.allowed = self._allowed_organs()
        self.original = text
        self.contradictions: list[dict] = []
        self.claims = 0
        self._spans: list[tuple[int, int]] | None = None
        self._side_list: list | None = None
        self._read()

    # -- what the image may show --------------------------------------------------------------------
    def _allowed_organs(self) -> set[str] | None:
        """Organs a description of this image may name; None when nothing says (no region stated or known)."""
        if self.region is None:
            return None
        if ALL in self.region.holds:
            return None
        slide = self.facts.modality in ("histopathology", "microscopy")
        allowed = set(self.region.core) | (set() if slide else set(self.region.holds))  # a slide shows its tissue, not the organs around it
        for organs in self.organs.values():
            allowed |= organs
        if slide:  # cells and nuclei are on every slide
            allowed |= {t.term for t in self.lex.vocabulary.terms if t.category == "anatomy" and t.system == "cellular"}
        return allowed

    # -- mentions -----------------------------------------------------------------------------------
    def _read(self) -> None:
        text, lex = self.text, self.lex
        label_table: dict[str, int] = {normal_form(f.label): i for i, f in reversed(list(enumerate(self.facts.labels)))}  # its own name first
        claimed: dict[str, set[int]] = {}
        for i in range(len(self.facts.labels)):
            for name in _label_names(self.facts.labels[i], lex):
                claimed.setdefault(name, set()).add(i)
        for name, owners in claimed.items():
            if name not in label_table and len(owners) == 1:  # a synonym two labels share ("heart myocardium" of every heart part) names neither
                label_table[name] = next(iter(owners))
        hits = [(a, b, ("label", i)) for a, b, i in _label_matcher(tuple(sorted(label_table.items()))).find(text)] if label_table else []
        hits = [h for h in hits if not _ends_other_term(text, h[0], h[1], self.facts.labels[h[2][1]], lex)]
        loose = [(a, b, ("label", i)) for a, b, i in longest(loose_find(text, {n: i for n, i in label_table.items() if " " in n.strip() or "-" in n or len(n) >= 6}))
                 if not any(a < y and x < b for x, y, _ in hits) and not _qualifier_inside(text[a:b], lex)]
        hits += [(a, b, ("finding", term)) for a, b, term in lex.findings.find(text) if not any(x <= a and b <= y for x, y, _ in loose)]
        hits += [(a, b, ("head", head)) for a, b, head in lex.head_words.find(text) if not any(x <= a and b <= y for x, y, _ in loose)]
        hits += loose
        self.places = [(a, b, owners) for a, b, owners in lex.places.find(text)]
        self.region_words = lex.region_words.find(text)
        spans = [(a, b) for a, b, _ in self.places]
        self.mentions = []
        for a, b, (kind, value) in longest(sorted(hits, key=lambda h: (h[0], {"label": 0, "finding": 1, "head": 2}[h[2][0]]))):
            if kind == "head" and re.match(r"\s*effect", text[b:b + 8], re.IGNORECASE):
                continue  # "mass effect"
            like = re.search(r"([\w]+)[\s-]like\s+$", text[max(0, a - 20):a])
            feature = like and kind != "label" and (self.facts.modality == "dermoscopy" or lex.findings.find(like.group(1))) and normal_form(like.group(1)) not in lex.heads
            if re.search(r"\bnon[\s-]*$", text[max(0, a - 5):a], re.IGNORECASE) or feature:
                continue  # "non mitosis", "non-tumour": another class; "milia-like cysts": a feature of the lesion
            self.mentions.append(self._mention(a, b, kind, value))
        parsed = parse(text, [(m.start, m.end) for m in self.mentions] + spans)
        for m, mark in zip(self.mentions, parsed.marks):
            m.negated, m.uncertain = mark.negated, mark.uncertain and not mark.negated
        self.place_marks = parsed.marks[len(self.mentions):]
        self.sentences = parsed.sentences
        self._starts = [a for a, _ in self.sentences]
        self._bind_heads()
        inside = [(m.start, m.end) for m in self.mentions] + spans
        here = {organ for _, _, owners in self.places for organ, _ in owners} & (self.allowed or set())
        own_places = {(a, b) for a, b, owners in self.places if {o for o, _ in owners} & here}
        words = lex.modalities.find(text)
        words = [(a, b, w) for a, b, w in words if not (text[a:b] in ("AP", "PA", "CC", "TR", "SI") and (re.search(r"\d\s*(?:mm|cm)\s*(?:\(|,)?\s*$", text[max(0, a - 12):a])
                 or re.match(r"\s*(?:diameter|dimension|measurement|plane)\b", text[b:b + 14], re.IGNORECASE)))]  # "4.8 cm AP": a dimension
        self.modality_words = [(a, b, w) for a, b, w in words if not any(x <= a and b <= y and (y - x) > (b - a) for x, y in inside)
                               and ((a, b) not in own_places or w.modality == self.facts.modality)]
        kept = [n for n, (a, b, _) in enumerate(self.places) if not any(x <= a and b <= y and (y - x) > (b - a) for x, y, _ in words)]
        self.places = [self.places[n] for n in kept]
        self.place_marks = [self.place_marks[n] for n in kept]
        self.sizes = [(a, b, s) for a, b, s in lex.sizes.find(text) if not any(x <= a and b <= y for x, y in inside if (x, y) != (a, b))
                      and not re.match(r"-(?!sized?\b|volume\b|calib)[a-z]", text[b:b + 8], re.IGNORECASE)  # "small-cell", "small-gland": a kind, no size
                      and not (normal_form(text[a:b]) == "little" and re.search(r"\ba\s*$", text[max(0, a - 3):a]))]  # "a little" is no size
        colours = [(a, b, v) for a, b, v in lex.colours.find(text)
                   if not (normal_form(text[a:b]) in ("red", "white", "grey", "gray") and re.match(r"[\s-]*(?:blood\s+)?(?:cells?|matter|pulp|reflex)\b", text[b:b + 16], re.IGNORECASE))
                   and not re.match(r"[\s-]*(?:outline|outlined|arrows?|arrowheads?|cross|circle|box|marker|contour|overlay|asterisk|star|line|dashed|dotted|mask)\b", text[b:b + 14], re.IGNORECASE)]
        # "(green outline)", "(white arrow)": the figure's marks, not a finding's colour
        self.colours = colours
        self.looks = [(a, b, d) for a, b, d in lex.appearance.find(text) if not any(x <= a and b <= y for x, y, _ in colours)]

    def _mention(self, a: int, b: int, kind: str, value) -> Mention:
        if kind == "label":
            return Mention(a, b, "label" if value in self.findings else "anatomy", label=value, term=self.facts.labels[value].term)
        if kind == "finding":
            said = normal_form(self.text[a:b]).split()
            found = self.lex.vocabulary.lookup(value)
            organ = self.lex.organ_of.get(value)
            for i in self.findings:
                f = self.facts.labels[i]
                own = set(normal_form(f.label).replace("_", " ").split())
                if own and own <= set(said) and not own <= NOT_HEADS:
                    return Mention(a, b, "label", label=i, term=value)  # "subdural haematoma" of a label "subdural"
                head = _head(f.label)
                own_term = _term_of(f, self.lex)
                if own_term and own_term != value and not self.lex.kin(value, own_term) and _distinct(self.lex, value, own_term, f.label):
                    continue  # "no pericardial effusion" beside a pleural effusion; "hard exudates" beside soft ones
                if own_term is None and found is not None and found.system == "cellular" and normal_form(found.term) != normal_form(f.label):
                    continue  # "target cells" are not the sickle cells labelled: one cell type is not another
                if self.lex.kin(value, own_term) or (head and said and (_stem(head) in (_stem(said[-1]), _stem(_head(value) or "")) or (len(head) >= 6 and said[-1].endswith(head) and re.fullmatch(r"carcinomas?|sarcomas?|adenomas?|lymphomas?|gliomas?", head)))):
                    return Mention(a, b, "label", label=i, term=value)
            generic = [i for i in self.findings if self._generic_label(i)]
            lesion_like = found is not None and any(LESION_LIKE.search(normal_form(n)) for n in (found.term, self.text[a:b]))
            lo = max(self.text.rfind(c, 0, a) for c in ".;:!?\n") + 1
            added = ADDED.search(self.text[lo:a])
            if added and normal_form(added.group(0)) == "with" and not ADDED.search(self.text[lo:a], added.end()) and not self.lex.findings.find(self.text[lo:a]):
                added = None  # "a core biopsy with adenocarcinoma": the finding itself
            if found is not None and found.category == "finding" and re.search(r"\bcells\b", normal_form(found.term)) and not added:
                tumours = [i for i in self.findings if LESION_LIKE.search(normal_form(self.facts.labels[i].label))]
                if len(tumours) == 1:  # "the neoplastic cells" of a carcinoma
                    return Mention(a, b, "label", label=tumours[0], term=value)
            if len(generic) == 1 and lesion_like and not added:  # a "tumour" or "benign" label: a named kind of lesion is it
                i = generic[0]
                if organ is None or organ in self.organs[i] or (not self.organs[i] and organ in self._region_organs()):
                    return Mention(a, b, "label", label=i, term=value)
            if normal_form(self.text[a:b]) in self.lex.heads:  # "opacity", "consolidation": a head when one finding can take it
                return Mention(a, b, "head", term=value)
            if said and said[-1].rstrip("s") in {h.rstrip("s") for h in self.lex.heads} and organ and any(organ in self.organs[i] for i in self.findings) \
                    and self.lex.organs_in(" ".join(said[:-1])):
                return Mention(a, b, "head", term=value)  # "liver lesions" on an image of liver metastases
            return Mention(a, b, "finding", term=value)
        weak = value in self.lex.weak_heads
        return Mention(a, b, "weak" if weak else "head")

    def _generic_label(self, i: int) -> bool:
        """A label that names a class rather than a finding: "tumor", "lung tumor", "benign", "tumor region"."""
        words = [w for w in normal_form(self.facts.labels[i].label).split() if not self.lex.organs_in(w) and w not in self.lex.weak_heads]
        return bool(words) and all(w in GENERIC_LABELS for w in words)

    def _organ_label(self, i: int) -> bool:
        """A label naming an organ ("liver", "prostate gland"): a head ("lesion") is not it."""
        term = self.lex.vocabulary.lookup(self.facts.labels[i].term or self.facts.labels[i].label)
        return term is not None and term.category == "anatomy"

    def _label_organs(self) -> set[str]:
        return set().union(*self.organs.values()) if self.organs else set()

    def _region_organs(self) -> set[str]:
        if self.region is None:
            return set()
        return {self.region.name} | self.lex.organs_in(self.region.name)

    def _sentence(self, pos: int) -> tuple[int, int]:
        n = bisect_right(self._starts, pos) - 1
        if n >= 0 and pos < self.sentences[n][1]:
            return self.sentences[n]
        return 0, len(self.text)

    def _place_near(self, m: Mention) -> list[tuple[int, int, tuple]]:
        """Places linked to a mention: an adjective right before it ("hepatic lesion") or a place after
        it in its clause ("lesion in the right lobe of the liver")."""
        lo, hi = self._sentence(m.start)
        out = []
        for a, b, owners in self.places:
            if not lo <= a < hi:
                continue
            if b <= m.start and len(self.text[b:m.start].split()) <= 1:
                out.append((a, b, owners))
            elif a >= m.end and (len(self.text[m.end:a].split()) <= 6 or RELATIVE_PLACE.match(self.text[m.end:a])) and LINK_BEFORE_PLACE.search(self.text[m.end:a]) and not self._mention_between(m.end, a):
                out.append((a, b, owners))
            elif a >= m.end and re.fullmatch(r"\s+(?:[LR]\s+|left\s+|right\s+)?", self.text[m.end:a], re.IGNORECASE):
                out.append((a, b, owners))  # terse: "avid lesion R iliac bone"
            elif a >= m.end and re.fullmatch(r"\s*,\s*(?:(?:upper|lower|mid|inferior|superior)\s+pole\s+(?:of\s+)?(?:the\s+)?)?(?:[LR]\s+|left\s+|right\s+)?", self.text[m.end:a], re.IGNORECASE) \
                    and (m.kind == "label" or self.facts.modality not in ("histopathology", "microscopy")):
                out.append((a, b, owners))  # terse apposition: "7 mm nodule, R hepatic lobe"; "lesion, upper pole R kidney"
        return out

    def _mention_between(self, a: int, b: int) -> bool:
        return any(a <= m.start < b for m in self.mentions if m.kind != "weak")

    def _bind_heads(self) -> None:
        """A generic head names the image's finding when one finding could be meant, or when the organ
        linked to the head is that finding's; a weak head followed by "of <finding>" is that finding."""
        for n, m in enumerate(self.mentions):
            if m.kind not in ("head", "weak"):
                continue
            after = self.mentions[n + 1] if n + 1 < len(self.mentions) else None
            if m.kind == "weak" and after and after.kind in ("label", "anatomy") and re.fullmatch(r"\s+of\s+(?:the\s+)?(?:[\w-]+\s+){0,2}", self.text[m.end:after.start], re.IGNORECASE):
                m.label, m.merged = after.label, True
                continue
            before = self.mentions[n - 1] if n else None
            if m.kind == "weak" and before and before.kind in ("label", "anatomy") and not self.text[before.end:m.start].strip():
                m.label, m.merged = before.label, True  # "the largest hip right region"
                continue
            near = {organ for _, _, owners in self._place_near(m) for organ, _ in owners}
            pool = [i for i in self.findings if not self._organ_label(i)] or self.findings
            if normal_form(self.text[m.start:m.end]) in MASS_HEADS:  # "no mass" does not deny a calcification or an effusion
                pool = [i for i in pool if not set(normal_form(self.facts.labels[i].label).split()) & NOT_MASSES]
                if not pool:
                    continue
            said = normal_form(self.text[m.start:m.end])
            if said in OPAQUE_HEADS or said in LUCENT_HEADS:  # "no focal consolidation" denies no emphysema
                pool = [i for i in pool if self.lex.direction(self.facts.labels[i].contrast) != ("darker" if said in OPAQUE_HEADS else "brighter")]
                if not pool:
                    continue
            candidates = [i for i in pool if not near or self.organs[i] & near or not self.organs[i] or _one_system(self, self.organs[i], near)]
            if near and len(candidates) > 1:
                candidates = [i for i in candidates if self.organs[i] & near] or candidates
            if len(candidates) > 1:
                lesions = [i for i in candidates if not self._organ_label(i)]
                candidates = lesions or candidates
            if len(candidates) > 1 and m.kind == "head":  # "mass" is the cancer, not the lymph node beside it
                lesion_like = [i for i in candidates if LESION_LIKE.search(normal_form(self.facts.labels[i].label))]
                candidates = lesion_like if len(lesion_like) == 1 else candidates
            if len(candidates) == 1:
                m.label = candidates[0]
            elif len(self.findings) == 1 and not near:
                m.label = self.findings[0]

    # -- binding qualifiers -------------------------------------------------------------------------
    def _owner(self, a: int, b: int, pass_places: bool) -> Mention | None:
        """The finding mention a qualifier at [a, b) qualifies: the finding right after it ("small, round
        lesion", "left renal cyst"); where a place follows it ("left kidney", "pale skin"), the finding
        in that place (sides only: a size or colour of a place is no claim about the finding); else the
        previous finding in its sentence ("a lesion in the right lobe"), else the previous sentence's."""
        text = self.text
        lo, hi = self._sentence(a)
        here = [m for m in self.mentions if lo <= m.start < hi]
        after = [m for m in here if m.start >= b]
        before = [m for m in here if m.end <= a]
        nxt = None
        if after:
            gap = re.sub(r"^\)|\($", "", text[b:after[0].start].strip()) if text[b:after[0].start].strip() in (")", "(") else text[b:after[0].start]
            words = re.findall(r"[\w'-]+", gap)
            if len(words) <= MODIFIER_GAP and not re.search(r"[.;:()]|\band\b|\bwith\b|\bor\b|\bthan\b", gap) and not (gap.count(",") and len(words) > 3):
                nxt = after[0]
                if nxt.label is None and len(after) > 1 and after[1].label is not None and not text[nxt.end:after[1].start].strip():
                    nxt = after[1]  # "brown-stained tumour nuclei": the head modifies the label after it
        if re.match(r"^[\s,]*(?:than|compared)\b", text[b:b + 14], re.IGNORECASE):
            if before or nxt:
                return before[-1] if before else nxt  # "lighter than the surrounding skin": of the subject
            previous = [m for m in self.mentions if m.end <= lo]
            return previous[-1] if previous else None
        if not pass_places and nxt is None:
            last = before[-1].end if before else lo
            relative = [(x, y) for x, y in self._place_spans() if last <= y and a - y <= 160 and re.fullmatch(r"\s*,?\s*(?:which|that|where)\b[^.;:]*", text[y:a])]
            if relative and before and LINK_BEFORE_PLACE.search(text[before[-1].end:relative[0][0]]) and len(text[before[-1].end:relative[0][0]].split()) <= 6:
                return before[-1]  # "an area in the right parietal lobe that lights up": the finding in that place
            if relative:
                return None  # "the macula, which appears darker": the place just named
            prep = re.search(r"\b(?:of|with|among|containing|surrounded by|between)\s+(?:\w+\s+){0,2}$", text[max(lo, a - 30):a], re.IGNORECASE)
            made_of = re.search(r"\b(?:composed|consisting|made up|formed)\s+of\s+(?:[\w-]+\s+){0,2}$", text[max(lo, a - 40):a], re.IGNORECASE)
            if made_of and before and self.lex.colours.value(text[a:b]) is not None:
                return before[-1]  # "a lesion composed of blue-black lacunae": the lesion's colour
            if prep and not (before and not text[before[-1].end:max(lo, a - 30) + prep.start()].strip()):
                return None  # "composed of small crowded glands": a thing the text names ("an area of increased lucency" is the finding's)
        place = next((p for p in self._place_spans() if b <= p[0] < hi and len(text[b:p[0]].split()) <= 1 and not re.search(r"[,.;:]", text[b:p[0]])
                      and not (nxt and nxt.start <= p[0])), None)
        if place is not None and not (nxt and nxt.start >= place[1] and len(text[place[1]:nxt.start].split()) <= 1):
            if not pass_places:
                return None
            if before:
                return before[-1]
            return after[0] if after else None
        if nxt is not None:
            return nxt
        if before:
            return before[-1]
        if not here:
            previous = [m for m in self.mentions if m.end <= lo]
            if previous:
                return previous[-1]
            following = [m for m in self.mentions if m.start >= hi]
            if following and pass_places:
                return following[0]  # "Right CC mammogram: small mass ..."
        return None

    def _place_spans(self) -> list[tuple[int, int]]:
        """Places and region words, but not those inside a finding's name ("pleural" of "pleural effusion");
        computed once per text."""
        if self._spans is None:
            spans = [(a, b) for a, b, _ in self.places] + [(a, b) for a, b, _ in self.region_words]
            self._spans = sorted(p for p in spans if not any(m.start <= p[0] and p[1] <= m.end for m in self.mentions))
        return self._spans

    def _label_at(self, a: int, b: int, pass_places: bool = False) -> int | None:
        lo, _ = self._sentence(a)
        if re.search(r"\b(?:surrounding|adjacent|background|remaining|compared (?:with|to)|than|relative to|against|unlike)\s+(?:the\s+|its\s+)?(?:[\w-]+\s+){0,3}$", self.text[max(lo, a - 50):a], re.IGNORECASE):
            named = next((m for m in self.mentions if m.start >= b and m.kind == "label"), None)
            if named is not None and re.fullmatch(r"[\s-]*(?:(?!than\b|to\b|against\b|unlike\b|compared\b|versus\b)[\w-]+\s+)?", self.text[b:named.start]) and not (named.negated or named.uncertain):
                return named.label  # "surrounding low-signal oedema" of a label "peritumoral edema"
            return None  # "against the surrounding pink mucosa": the surroundings' colour
        hi = self._sentence(a)[1]
        normal = NORMAL.search(self.text[lo:hi])
        if not pass_places and not any(lo <= m.start < hi for m in self.mentions) and any(lo <= x < a and (normal or not self._own_ground(x, y)) for x, y in self._place_spans()):
            return None  # "The left peripheral zone shows normal high T2 signal.": a sentence about a structure, not the finding
        m = self._owner(a, b, pass_places)
        if m is None or m.negated or m.uncertain:
            return None
        return m.label

    def _own_ground(self, x: int, y: int) -> bool:
        """A place that is the image's own region ("the lower right chest" of a chest film), not a structure in it."""
        return self.region is not None and normal_form(self.text[x:y]) in {normal_form(w) for w in (self.region.name, *self.region.words)}

    def _generic_before(self, a: int) -> bool:
        lo, _ = self._sentence(a)
        return bool(GENERIC.search(self.text[lo:a]))

    def _not_claim(self, a: int) -> bool:
        lo, hi = self._sentence(a)
        return bool(NOT_CLAIMS.search(self.text[lo:hi])) or bool(GENERIC.search(self.text[lo:a])) or bool(CONTEXT.search(self.text[lo:a]))

    # -- contradictions -----------------------------------------------------------------------------
    def contradict(self, kind: str, a: int, b: int, fact: str) -> None:
        if b <= a:
            return
        span = [a, b]
        if any(c["span"] == span and c["type"] == kind for c in self.contradictions):
            return
        self.contradictions.append({"type": kind, "facet": FACET[kind], "claim": self.original[a:b], "fact": fact, "span": span, "by": "rule"})


LESION_WORDS = ("metastas[ie]s", "deposits?", "tumou?rs?", "carcinomas?", "cancers?", "cysts?", "masse?s?", "lesions?", "nodules?", "polyps?", "neoplasms?", "malignan\w*", "growths?", "adenomas?")
BARE_LESION = re.compile(r"(?:" + "|".join(LESION_WORDS) + r")")  # a label that is only a generic lesion word
LESION_LIKE = re.compile(r"oma\b|\b(?:" + "|".join(LESION_WORDS) + r")\b")  # a name of some kind of lesion
ADDED = re.compile(r"\b(?:also|additional(?:ly)?|another|separate|second|plus|as well as|in addition|besides|with|adjacent|nearby|and an?)\b", re.IGNORECASE)
GENERIC_AFTER = re.compile(r"\s*(?:\([^)]*\)\s*)?(?:(?:is|are)\s+(?:an?\s+|the\s+)?(?:common|commonest|frequent|rare|typical|classic|known|usual|recogni[sz]ed|well-known|important)\b|"
                           r"(?:is|are)\s+(?:an?\s+|the\s+)?(?:[\w-]+\s+)?(?:complication|risk|concern|consequence|sequela)s?\b|"
                           r"(?:can|may|might|could|often|usually|typically|commonly|tend to|tends to)\b)", re.IGNORECASE)  # "granulomas are a common cause of such findings"
OPAQUE_HEADS = frozenset({"opacity", "opacities", "consolidation", "consolidations", "infiltrate", "infiltrates"})
LUCENT_HEADS = frozenset({"lucency", "lucencies"})
MASS_HEADS = frozenset({"lesion", "lesions", "mass", "masses", "nodule", "nodules", "tumour", "tumours", "tumor", "tumors", "growth", "growths", "neoplasm",
                        "neoplasms", "neoplasia", "malignancy", "carcinoma", "cancer"})
NOT_MASSES = frozenset({"calcification", "calcifications", "calcs", "effusion", "effusions", "pneumothorax", "fracture", "fx", "cardiomegaly", "haemorrhage",
                        "hemorrhage", "bleeding", "oedema", "edema", "stone", "stones", "calculus", "calculi", "gallstone", "consolidation", "opacity",
                        "atelectasis", "emphysema", "ascites", "hydronephrosis", "steatosis", "exudates", "microaneurysm", "microaneurysms", "drusen", "vessels",
                        "nuclei", "cells", "glands", "gland", "infarct", "stroke", "dislocation", "aneurysm", "thrombus", "embolism"})
GENERIC_LABELS = frozenset({"cancerous", "carcinomatous", "neoplastic", "tissue",
                            "lesion", "lesions", "mass", "masses", "tumor", "tumors", "tumours", "growth", "neoplasm", "finding", "focus", "foci", "benign", "malignant", "abnormal", "abnormality", "positive", "pathology", "disease", "tumour", "cancer", "enhancing", "solid",
                            "necrotic", "primary", "active", "residual", "gross", "viable", "suspected", "suspicious", "fdg", "avid", "hypermetabolic"})


NOT_HEADS = frozenset({"left", "right", "lt", "rt", "l", "r", "midline", "upper", "lower", "middle", "anterior", "posterior", "superior", "inferior",
                       "medial", "lateral", "proximal", "distal", "bilateral", "and", "of", "the"})


def _head(label: str) -> str | None:
    """A label's last word ("lesion" of "liver lesion", "cup" of "optic cup"), unless it negates ("non lumen")."""
    words = [w for w in normal_form(label).split() if w not in NOT_HEADS and not re.fullmatch(r"[a-z]?\d+[a-z]?", w)]
    if not words or normal_form(label).split()[0] in ("non", "no", "not") or len(words[-1]) < 3:
        return None
    return words[-1]


def _stem(word: str) -> str:
    """"infiltrate", "infiltration", "infiltrates" alike; "calculi", "calculus"."""
    return re.sub(r"(?:ations?|ates?|ions?|es|us|i|s)$", "", word.lower()) or word.lower()


@lru_cache(maxsize=4096)
def _label_matcher(names: tuple[tuple[str, int], ...]) -> Matcher:
    return Matcher.of(dict(names), plural=True)


def _count_range(q: str | None, n: str) -> tuple[int, int] | None:
    word = n.lower()
    if word.isdigit():
        value = int(word) if len(word) <= 9 else INF
    elif word in NUMBER_WORDS:
        value = NUMBER_WORDS[word]
    elif word in COUNT_WORDS:
        return COUNT_WORDS[word]
    else:
        return None
    q = (q or "").lower().rstrip(".")
    if q in ("approximately", "approx", "about", "around", "roughly", "some", "nearly", "almost", "~"):
        return int(value * 0.75), int(value * 1.25 + 0.999)
    if q in ("over", "more than", "greater than", ">"):
        return value + 1, INF
    if q in ("at least", "≥"):
        return value, INF
    if q in ("fewer than", "less than", "<"):
        return 0, value - 1
    if q in ("up to", "≤"):
        return 0, value
    return value, value


def score(facts: Facts, text: str, facets: dict | None = None, lex: Lexicon | None = None) -> Score:
    lex = lex or lexicon()
    r = Reading(facts, text or "", facets, lex)
    covered: dict[str, bool] = {}
    _modality(r, covered)
    _region(r, covered)
    _findings(r, covered)
    covered.setdefault("modality", False)
    if facts.body_region:
        covered.setdefault("organ", False)
    got, required = sum(covered.values()), len(covered)  # every required fact has its entry
    bad = len(r.contradictions)
    claims = max(r.claims, bad)
    return Score(
        faithfulness=round(1.0 - bad / claims, 4) if claims else 1.0, completeness=round(got / required, 4), claims=claims, required=required,
        covered=got, contradictions=sorted(r.contradictions, key=lambda c: (c["span"], c["type"])), annotation_suspect=annotation_suspects(facts, lex),
        missing=[_fact_name(key, facts) for key, said in covered.items() if not said],
    )


def _fact_name(key: str, facts: Facts) -> str:
    """"side:0" -> "side of liver tumor"; "organ" -> "organ (abdomen)"."""
    kind, _, index = key.partition(":")
    if not index:
        return f"organ ({facts.body_region})" if kind == "organ" else f"modality ({facts.modality})"
    return f"{ {'named': 'name', 'side': 'side', 'size': 'size'}[kind] } of {facts.labels[int(index)].label}".replace("  ", " ")


def _modality(r: Reading, covered: dict) -> None:
    own, compatible = r.facts.modality, r.lex.compatible.get(r.facts.modality, frozenset())
    beside = r.lex.beside.get(own, frozenset())
    covered["modality"] = False
    claims = [(a, b, word) for a, b, word in r.modality_words if not r._not_claim(a)]
    named_own = any(word.modality == own and not r.lex.appearance.value(r.text[a:b]) for a, b, word in claims)
    for a, b, word in claims:
        if word.modality != own and re.match(r"\s+(?:later\s+|subsequently\s+|then\s+)?(?:showed|revealed|confirmed|demonstrated|proved|proven)\b", r.text[b:b + 24], re.IGNORECASE):
            continue  # "histology showed invasive ductal carcinoma": another, later study
        r.claims += 1
        if word.modality == own or (word.modality in compatible and not word.strict):
            covered["modality"] = True  # "micrograph" of a histology slide
        elif (word.modality not in compatible or (word.strict and not _in_parentheses(r.text, a))) and not (word.modality in beside and named_own):
            r.contradict("modality", a, b, own)
            continue
        organ = word.organ or None
        implied = r.lex.regions.get(word.region) if word.region else None
        if implied is not None and r.region is not None and implied.name != r.region.name and implied.core and r.region.core and not implied.core & r.region.core \
                and not implied.core & r._label_organs():
            r.contradict("region", a, b, r.facts.body_region or "")
            continue
        if organ and r.allowed is not None and organ not in r.allowed and not (r.region is not None and organ in r.lex.around(r.region)):
            r.contradict("region", a, b, r.facts.body_region or "")
        elif (organ or word.region) and r.facts.body_region:
            covered.setdefault("organ", False)
            if r.facts.body_region and (organ in (r.allowed or {organ}) or (word.region and r.region and word.region == r.region.name)):
                covered["organ"] = True


def _in_parentheses(text: str, a: int) -> bool:
    """An aside: "(seen as desmosomes by electron microscopy)"."""
    return text.rfind("(", 0, a) > text.rfind(")", 0, a)


def _region(r: Reading, covered: dict) -> None:
    if not r.facts.body_region:
        return
    covered["organ"] = covered.get("organ", False)
    allowed = r.allowed
    neighbours = r.lex.around(r.region) if r.region is not None and r.facts.modality in PATIENT_SIDED else frozenset()  # a slide, a scope, a photo: no neighbours in view
    for (a, b, owners), mark in zip(r.places, r.place_marks):
        organs = {organ for organ, _ in owners}
        if mark.negated or mark.uncertain or r._not_claim(a) or _part_of_something(r, a, b):
            continue
        lo, hi = r._sentence(a)
        if r.region is not None and organs & (r.region.core | r._label_organs()) and (allowed is None or organs & allowed):
            covered["organ"] = True  # the region's own organ ("from the jejunum" of a small-bowel frame), however the sentence goes on
            r.claims += 1
            continue
        listed = any(lo <= x and (x <= b + 12 and y >= a - 12) and (re.fullmatch(r"\s*(?:,|and|or|&)\s*(?:the\s+)?", r.text[y:a]) or re.fullmatch(r"\s*(?:,|and|or|&)\s*(?:the\s+)?", r.text[b:x]))
                     for x, y, _ in r.places if (x, y) != (a, b) and (y <= a or x >= b))
        if organs & neighbours and (NORMAL.search(r.text[lo:hi]) or listed or re.search(r"\b(?:visuali[sz]ed|included|imaged|partially|adjacent|neighbouring|neighboring|nearby|seen|patent|preserved|"
                                                                          r"visible|outlined|intact)\b", r.text[lo:hi], re.IGNORECASE)
                                                 or (r.facts.modality != "endoscopy" and re.search(r",[^,]*,", r.text[lo:hi]))):
            r.claims += 1
            continue  # the neighbours, listed or said to be normal ("the liver dome is seen", "spleen, pancreas and kidneys unremarkable")
        broader = r.region is not None and len(r.region.core) <= 2 and any(
            r.lex.regions.get(o) is not None and r.region.core <= r.lex.regions[o].holds for o in organs)  # "MRI neck" of a tongue image
        if allowed is None or organs & allowed or broader:
            covered["organ"] = True
            r.claims += 1
        elif not _inside_finding(r, a, b):
            r.claims += 1
            r.contradict("region", a, b, r.facts.body_region)
    for a, b, name in r.region_words:
        if re.search(r"(?:\ben\s+|\b(?:left|right)-)$", r.text[max(0, a - 6):a], re.IGNORECASE):
            continue  # "viewed en face", "the right-hand side"
        if r.facts.body_region and normal_form(r.text[b:b + 40]).startswith(normal_form(r.facts.body_region)) and r.facts.modality not in PATIENT_SIDED:
            covered["organ"] = True
            continue  # "an axillary lymph node" of a lymph-node slide: where the tissue came from
        if _part_of_something(r, a, b):
            continue  # "the head of the optic nerve", "radial head", "femoral neck"
        if r._not_claim(a) or any(m.start <= a and b <= m.end for m in r.mentions if m.kind in ("label", "finding")):
            continue
        region = r.lex.regions[name]
        if r.region is not None and (name == r.region.name or allowed is None or ALL in region.holds or r.region.surface or region.core & r.region.core
                                     or (len(r.region.core) <= 2 and r.region.core and r.region.core <= region.holds)  # "MRI neck" of a tongue image
                                     or (region.core and region.core <= (allowed or set()) and len(region.core) <= 2)
                                     or normal_form(r.text[a:b]) in {normal_form(w) for w in r.region.words} or region.core & r._label_organs()
                                     or re.search(r"\b(?:visuali[sz]ed|included|imaged|partially imaged|portions? of the)\s+(?:\w+\s+)?$", r.text[max(0, a - 30):a], re.IGNORECASE)):
            covered["organ"] = True
            r.claims += 1
        elif r.region is not None and re.search(r"(?:\band|/)\s*(?:the\s+)?$", r.text[max(0, a - 10):a], re.IGNORECASE) and any(
                y <= a and r.lex.regions[n].core & r.region.core for _, y, n in r.region_words):
            r.claims += 1  # "CT of the abdomen and pelvis": the study's other half
        elif r.region is not None and not any(a < x < b or a < y < b for x, y, _ in r.places if (x, y) != (a, b)):
            if any(x <= a and b <= y for x, y, _ in r.places):
                continue  # a word of a place already judged ("pelvis" in "renal pelvis")
            r.claims += 1
            r.contradict("region", a, b, r.facts.body_region)
    if not covered["organ"]:
        region_words = set(normal_form(r.facts.body_region).split())
        said = set(re.findall(r"[a-z]+", r.text.lower()))
        if region_words and region_words <= said:
            covered["organ"] = True
        for m in r.mentions:  # "pneumothorax" says the lung, "melanoma" the skin
            if m.kind in ("label",) and not m.negated and m.label is not None:
                if r.allowed is None or r.organs[m.label] & r.allowed and (r.region and r.organs[m.label] & (r.region.holds | {r.region.name})):
                    covered["organ"] = True


def _own_organs(r: Reading, f: LabelFacts) -> set[str]:
    """The organ a label itself names ("liver tumor", "kidney stone", "gallstone"): by its words, or its
    term's organ when the label is that term; a synonym's organ ("polyp": a colonic polyp) is not enough."""
    organs = {organ for _, _, owners in r.lex.places.find(f.label) for organ, _ in owners}
    term = r.lex.vocabulary.lookup(f.label)
    if term is not None and normal_form(term.term) == normal_form(f.label):
        organs |= {term.term} if term.category == "anatomy" else ({term.organ} if term.organ else set())
    return organs


def _placement(r: Reading, m: Mention, f: LabelFacts) -> None:
    """A finding placed in an organ other than its own ("a liver tumour in the upper pole of the right kidney",
    "a gallstone in the urinary bladder"): a region contradiction. Only organs some region is made of are
    judged (retinal vessels run over the optic disc)."""
    cores = {o for region in r.lex.regions.values() for o in region.core}
    own = _own_organs(r, f) & cores
    if not own:
        return
    linked = r._place_near(m)
    if not linked:
        return
    a, b, owners = linked[0]
    of = next(((x, y, o) for x, y, o in r.places if x > b and re.fullmatch(r"\s+of\s+(?:the\s+)?", r.text[b:x], re.IGNORECASE)), None)
    if of is not None:
        a, b, owners = of  # "the left lobe of the liver": the liver's lobe
    if _part_of_something(r, a, b) or any(organ in own for organ, _ in owners) or any(r.lex.regions.get(o) is not None and r.lex.regions[o].surface for o in own):
        return  # its own organ; or a skin finding on a body site
    if _one_system(r, own, {o for o, _ in owners}):
        return  # one skeleton ("bone marrow oedema" in the femoral condyle)
    r.claims += 1
    r.contradict("region", a, b, f"{f.label} ({', '.join(sorted(own))})")


def _one_system(r: Reading, own: set[str], places: set[str]) -> bool:
    """Organs of one skeleton or one cell: a bone finding in the spine, a nucleus in a cell."""
    def system(organ: str) -> str | None:
        term = r.lex.vocabulary.lookup(organ)
        return term.system if term is not None and term.term == organ else None
    systems = {system(o) for o in own} & {"musculoskeletal", "cellular"}
    return any(system(o) in systems for o in places)


def _part_of_something(r: Reading, a: int, b: int) -> bool:
    """A part word ("neck", "head", "tongue") that an adjective or "of ..." gives an owner: "femoral neck",
    "radial head", "tongue of salmon-pink mucosa"."""
    if normal_form(r.text[a:b]) not in r.lex.parts and normal_form(r.text[a:b]).removesuffix("s") not in r.lex.parts:
        return False
    if re.match(r"\s+of\b", r.text[b:b + 4]):
        return True
    regional = re.search(r"(?:^|[.:;\n(]\s*|\b(?:the|CT|MR|MRI|PET|US|X-ray|XR|scan|and|of)\s+)$", r.text[max(0, a - 16):a], re.IGNORECASE) \
        or re.match(r"\s*(?:CT|MRI|MR|PET|scan|and neck|region|,\s*neck)\b", r.text[b:b + 12], re.IGNORECASE)
    return not regional  # "CT head", "of the head" name the region; "radial head", "pink head", "femoral neck" a part


def _inside_finding(r: Reading, a: int, b: int) -> bool:
    """A place word that is part of a finding's name the image has ("hepatic" in "hepatic lesion")."""
    return any(m.start <= a and b <= m.end and m.kind == "label" for m in r.mentions)


def _findings(r: Reading, covered: dict) -> None:
    facts, text = r.facts, r.text
    named: dict[int, bool] = {i: False for i in r.findings}
    sides: dict[int, set] = {i: set() for i in range(len(facts.labels))}
    sizes: dict[int, set] = {i: set() for i in range(len(facts.labels))}
    for m in r.mentions:
        if m.kind == "anatomy":
            continue
        if m.kind == "weak":
            if m.label is not None and not m.negated:
                named[m.label] = True
            continue
        lo, hi = r._sentence(m.start)
        if m.label is not None:
            f = facts.labels[m.label]
            if m.negated:
                affirmed = m.kind == "head" and any(o.label == m.label and o.kind in ("label", "head") and not o.negated and not o.uncertain and o is not m for o in r.mentions)
                if not affirmed and not (m.kind == "head" and not f.count) and not normal_form(f.label).startswith(("non ", "no ")) and not _denies_elsewhere(r, m, f) \
                        and not _denies_something_else(r, m, f):
                    r.claims += 1
                    r.contradict("absent_finding", *_negation_span(r, m), f"{f.label} is on the image")
                continue
            if m.uncertain:
                named[m.label] = True
                continue
            if _another_elsewhere(r, m):
                r.claims += 1
                r.contradict("phantom_finding", m.start, m.end, "not annotated on this image")
                continue
            r.claims += 1
            named[m.label] = True
            _placement(r, m, f)
        elif m.kind == "finding" and not m.negated and not m.uncertain and not r._not_claim(m.start) and not r._generic_before(m.start) and not GENERIC_AFTER.match(text[m.end:hi]) \
                and not re.search(r"\b(?:no|without|nor)\s+(?:other|additional|further|new|second|more)\b(?:\s+[\w-]+){0,3}\s*$", text[lo:m.start], re.IGNORECASE) \
                and not re.search(r"\b(?:metasta\w+|secondar\w+|spread|deposits?|involvement)\s+(?:\w+\s+)?(?:from|of)\s+(?:an?\s+|the\s+|known\s+|primary\s+)*$", text[lo:m.start], re.IGNORECASE) \
                and not re.search(INTERPRETIVE.pattern + r"\s+(?:an?\s+|the\s+|some\s+)?(?:[\w-]+\s+){0,3}$", text[lo:m.start], re.IGNORECASE) \
                and not _names_region(r, m) and not re.search(r"\b(?:in|within|into|inside)\s+(?:the|a|an|one)\s+(?:[\w-]+\s+)?$|\b(?:among|amid|amongst|between|surrounded by|undergoing|in)\s+(?:the\s+)?(?:[\w-]+\s+)?$", text[max(lo, m.start - 30):m.start], re.IGNORECASE):
            r.claims += 1
            r.contradict("phantom_finding", m.start, m.end, "not annotated on this image")
        elif m.kind == "head" and m.label is None and not m.negated and not m.uncertain and not r._not_claim(m.start):
            near = {organ for _, _, owners in r._place_near(m) for organ, _ in owners}
            own = [_own_organs(r, facts.labels[i]) for i in r.findings]
            if near and len(r.findings) == 1 and own[0] and not near & own[0] and not ADDED.search(text[lo:m.start]) and not _one_system(r, own[0], near) \
                    and not any(r.lex.regions.get(o) is not None and r.lex.regions[o].surface for o in own[0]):
                place = r._place_near(m)[0]
                r.claims += 1
                r.contradict("region", place[0], place[1], f"{facts.labels[r.findings[0]].label} ({', '.join(sorted(own[0]))})")
                continue  # "a small renal lesion" on an image whose one finding is a liver tumour
            if near and r.findings and not any(near & r.organs[i] for i in r.findings) and re.search(r"\b(?:additional|another|second|also|further|new|separate)\b", text[lo:m.start], re.IGNORECASE):
                r.claims += 1
                r.contradict("phantom_finding", m.start, m.end, "not annotated on this image")
    _sides(r, sides)
    _sizes(r, sizes)
    _counts(r)
    _looks(r)
    _normal_statements(r)
    _pronoun_denials(r)
    _denial_phrases(r)
    for i in r.findings:
        f = facts.labels[i]
        covered[f"named:{i}"] = named[i]
        if f.count > 0 and f.side:  # the largest region's side; for regions scattered over both sides, only when the text gives one
            said = bool(sides[i] & _sides_of(f)) or (f.side == "midline" and _said_central(r, i))
            if said or len(_sides_of(f)) == 1 or f.count <= 2:
                covered[f"side:{i}"] = said
        if f.count > 0 and f.size_class:
            covered[f"size:{i}"] = f.size_class in sizes[i] or _measured(r, i)  # "4.5 cm" states a size, though not its class


def _another_elsewhere(r: Reading, m: Mention) -> bool:
    """"Three avid nodes ... There is also an intensely avid lesion in the spleen": a generic head said to be
    another one, in an organ none of the label's regions lies in, after the label was named."""
    if m.kind != "head" or m.label is None:
        return False
    lo, _ = r._sentence(m.start)
    if not re.search(r"\b(?:also|additional(?:ly)?|another|second|further|separate|in addition)\b", r.text[lo:m.start], re.IGNORECASE):
        return False
    earlier = [o for o in r.mentions if o.label == m.label and o.end <= lo and not o.negated]
    said, own_head = normal_form(r.text[m.start:m.end]).rstrip("s"), (_head(r.facts.labels[m.label].label) or "").rstrip("s")
    if earlier and re.search(r"\b(?:separate|additional|another|second|further|new)\s+(?:[\w-]+\s+){0,4}$", r.text[lo:m.start], re.IGNORECASE) \
            and said != own_head and said not in ("lesion", "focu", "foci", "area", "abnormality", "finding"):
        return True  # "microadenoma, midline. Separate 4 mm Rathke cleft cyst.": another kind of finding
    own = r.organs.get(m.label) or {organ for o in earlier for _, _, owners in r._place_near(o) for organ, _ in owners}  # where the text put it
    near = {organ for _, _, owners in r._place_near(m) for organ, _ in owners}
    if not (near and earlier and own) or own & DISTRIBUTED or near & DISTRIBUTED:
        return False  # lymph nodes, bones, skin lie everywhere
    return not near & own and not _one_system(r, own, near)


DISTRIBUTED = frozenset({"lymph node", "bone", "skin", "muscle", "blood vessel", "soft tissue", "nerve"})


def _names_region(r: Reading, m: Mention) -> bool:
    """A finding's name that is the body region itself (a slide "of a lymph node")."""
    if not r.facts.body_region:
        return False
    region = r.lex.vocabulary.lookup(r.facts.body_region)
    return normal_form(r.facts.body_region) in normal_form(r.text[m.start:m.end]) or (region is not None and region.term == m.term)


SUBTYPES = frozenset({"fragmented", "mitotic", "apoptotic", "dividing", "binucleate", "binucleated", "multinucleated", "necrotic", "dead", "dying", "immature",
                      "giant", "daughter", "satellite", "ring-form", "infected", "parasitised", "parasitized", "visceral", "nodal", "neighbouring", "neighboring",
                      "negative", "inverse", "atypical", "broadened"})  # "no mitotic cells": a kind of the labelled cells


PART_AFTER = re.compile(r"^[\s-]*(?:[\w-]+\s+)?(?:centre|center|core|rim|halo|border|periphery|component|scar|scar-like|streaks?|veil|network|cytoplasm|nucle(?:us|i)|cup|stalk|head)\b", re.IGNORECASE)
def _part_after(r: Reading, b: int, i: int | None) -> bool:
    """The words after a qualifier name a part of the finding ("centre", "rim", "veil"), not the finding
    itself ("pale pink nuclei" of an image labelled nuclei)."""
    part = PART_AFTER.match(r.text[b:b + 30])
    return bool(part) and not any(m.label == i and b <= m.start < b + part.end() for m in r.mentions)


MEASURE = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:\s*[-–x×]\s*\d+(?:\.\d+)?)*\s*(?:mm|cm)\b", re.IGNORECASE)


def _measured(r: Reading, i: int) -> bool:
    """A measurement of the finding ("a 2.1 cm mass", "measuring 7 mm"): its size is stated (completeness only:
    without the pixel spacing the class is not checked against it)."""
    return any(r._label_at(m.start(), m.end()) == i for m in MEASURE.finditer(r.text))


def _said_central(r: Reading, i: int) -> bool:
    """"In the centre of the image", "centrally": the midline said in other words (coverage only; "central"
    is no side claim to contradict, it also names zones and patterns)."""
    return any(r._label_at(m.start(), m.end()) == i for m in CENTRAL.finditer(r.text))


def _denies_elsewhere(r: Reading, m: Mention, f: LabelFacts) -> bool:
    """A negation about another place than the finding's: "no lesion in the left lobe" for a right-sided
    one, "no other lesion", "no renal lesion" for a liver lesion."""
    lo, hi = r._sentence(m.start)
    clause = r.text[lo:hi]
    near_words = " ".join(r.text[lo:m.start].split()[-4:])
    if (ELSEWHERE.search(near_words) and not re.fullmatch(r".*\botherwise\b.*", near_words, re.IGNORECASE | re.DOTALL) or (ELSEWHERE.search(r.text[m.end:hi][:40]) and not re.match(r"\s*(?:,\s*)?(?:or|nor|and)\s+(?:any\s+)?(?:other|another)\b", r.text[m.end:hi], re.IGNORECASE))) \
            or re.search(r"\b(?:other|another|additional|further|new|remaining|rest of)\b", near_words, re.IGNORECASE):
        return True  # "no other lesion"; "the retina is otherwise free of exudates" still denies the exudates
    between = [w.lower() for w in re.findall(r"[\w'-]+", r.text[lo:m.start])[-6:]]
    cue = max((i for i, w in enumerate(between) if w in ("no", "not", "without", "any", "of", "see", "negative", "free")), default=None)
    if cue is not None and any(w in SUBTYPES for w in between[cue + 1:]):
        return True  # "no fragmented nuclei", "no mitotic cells": a kind of it is denied, not the finding
    own_sides = _sides_of(f)
    for pattern, side in ((LEFT, "left"), (RIGHT, "right")):
        for s in pattern.finditer(clause):
            if own_sides and side not in own_sides and lo + s.start() < m.end + 40:
                return True  # "the left carotid system is normal, with no plaque" for a right-sided plaque
    near = {organ for _, _, owners in r._place_near(m) for organ, _ in owners}
    if near and r.organs.get(m.label) and not near & r.organs[m.label]:
        return True
    subject = [owners for x, _, owners in r.places if lo <= x < m.start]
    if m.kind == "head" and subject and r.organs.get(m.label) and not any({o for o, _ in owners} & r.organs[m.label] for owners in subject):
        return True  # "the liver shows no focal lesions" on an image of a pancreatic mass
    return False


def _denies_something_else(r: Reading, m: Mention, f: LabelFacts) -> bool:
    """"No disc haemorrhage", "no bleeding source": the finding names what is denied, not itself; "no
    large mass" on an image of small lesions denies a size it does not have."""
    if re.match(r"[\s-]*(?:source|site|point|origin|cause|haemorrhages?|hemorrhages?|bleeding|oedema|edema|invasion|involvement|extension|atrophy|notching|rupture|thrombus)\b", r.text[m.end:m.end + 16], re.IGNORECASE):
        return True
    lo, _ = r._sentence(m.start)
    sized = [s for a, b, s in r.sizes if lo <= a and b <= m.start and m.start - b <= 12]
    return bool(sized) and bool(f.size_class) and all(s != f.size_class for s in sized)


def _negation_span(r: Reading, m: Mention) -> tuple[int, int]:
    """The negation with the finding it denies ("no focal consolidation"), within the sentence."""
    lo, _ = r._sentence(m.start)
    before = r.text[lo:m.start]
    cue = None
    for c in re.finditer(r"\b(?:no|not|without|absent|absence of|free of|negative for|nor|neither|none|rule[sd]? out|resolved|clear of)\b", before, re.IGNORECASE):
        cue = c
    if cue and m.start - (lo + cue.start()) <= 60:
        return lo + cue.start(), m.end
    return m.start, m.end


def _side_claims(r: Reading) -> list[tuple[int, int, str, bool]]:
    """(start, end, side, said in image terms) per side word, and per organ part that implies a side."""
    if r._side_list is None:
        r._side_list = _find_sides(r)
    return r._side_list


def _find_sides(r: Reading) -> list[tuple[int, int, str, bool]]:
    text, out = r.text, []
    for pattern, side in ((LEFT, "left"), (RIGHT, "right"), (MIDLINE, "midline"), (BILATERAL, "bilateral")):
        for s in pattern.finditer(text):
            a, b = s.start(), s.end()
            if side in ("left", "right"):
                if RELATION_AFTER.match(text[b:b + 20]) and not re.match(r"^\s*(?:of|to)\s+(?:the\s+)?(?:image|frame|picture|screen|field|view|slide|midline)", text[b:b + 30], re.IGNORECASE):
                    if RELATION_BEFORE.search(text[max(0, a - 12):a]) or re.match(r"^\s*of\s", text[b:b + 5]):
                        continue
                if re.match(r"^\s*-?\s*(?:to|and|&)\s*-?\s*(?:the\s+)?(?:left|right|l|r|lt|rt)\b", text[b:b + 16], re.IGNORECASE) or re.search(r"\b(?:left|right|l|r|lt|rt)\s*(?:to|and|&)\s*-?\s*$", text[max(0, a - 12):a], re.IGNORECASE):
                    continue  # "right-to-left", "left and right": both or a direction
                if re.match(r"^\s*(?:angle|away|untreated|behind|over|alone|now|photomicrograph|micrograph|image|panel|picture|inset|figure|column|row|"
                            r"in the (?:centre|center|middle|midline)|at the (?:centre|center|middle|midline)|on the midline|next to|there|here)\b", text[b:b + 24], re.IGNORECASE):
                    continue  # "the left photomicrograph": a panel of the figure
            if side in ("left", "right") and re.search(r"\b(?:extends?|extending|crossing|across|shifted|shift|deviated|deviation|displaced|displacement|displacing|pushing|pushed)\s+(?:across\s+)?(?:to(?:wards?)?\s+)?(?:the\s+)?$", text[max(0, a - 30):a], re.IGNORECASE):
                continue  # "extends across to the left", "shifted to the right": a direction
            lo, hi = r._sentence(a)
            image_side = bool(IMAGE_SIDE_AFTER.match(text[b:b + 60]) or IMAGE_SIDE_BEFORE.search(text[max(0, a - 20):a])
                              or (re.search(r"\b(?:of|in|on) the (?:image|frame|picture|field|photo)\b", text[lo:hi], re.IGNORECASE)
                                  and re.search(r"\b(?:upper|lower|top|bottom|toward|towards)\s+(?:the\s+)?$", text[max(lo, a - 14):a], re.IGNORECASE)))
            if side == "midline" and re.match(r"\s*(?:shift|structures|deviation)\b", text[b:b + 14], re.IGNORECASE):
                continue  # "no midline shift"
            if side == "midline" and not re.search(r"\b(?:in|at|to|near|across|crossing)\b[^.;:]{0,24}$", text[max(0, a - 30):a], re.IGNORECASE) and not _mention_after(r, b):
                continue  # "no shift of midline structures" is no side
            out.append((a, b, side, image_side))
    for (a, b, owners), mark in zip(r.places, r.place_marks):
        if r.facts.modality in PATIENT_SIDED and not mark.negated:
            implied = {s for _, s in owners if s}
            if len(implied) == 1 and not any(x <= a < y or a <= x < b for x, y, _, _ in out):
                out.append((a, b, implied.pop(), False))
    return out


def _study_side_of(r: Reading, a: int, b: int) -> int | None:
    """The finding a study's side speaks of ("MRI L knee", "US of the left breast", "sonogram of the right
    kidney"): the one finding of the organ or region the side qualifies, on one side only."""
    place = next(((x, y) for x, y in r._place_spans() if b <= x <= b + 30 and len(r.text[b:x].split()) <= 1 and not re.search(r"[,.;:]", r.text[b:x])), None)
    if place is None or NORMAL.search(r.text, place[1], r._sentence(a)[1]):
        return None
    organs = r.lex.organs_in(r.text[place[0]:place[1]]) | ({r.region.name} if r.region is not None and normal_form(r.text[place[0]:place[1]]).rstrip("s") in
                                                          {normal_form(w).rstrip("s") for w in r.region.words} else set())
    region = (r.region.core | {r.region.name}) if r.region is not None else set()
    candidates = [i for i in r.findings if r.facts.labels[i].count and len(_sides_of(r.facts.labels[i]) - {"midline"}) == 1
                  and (organs & (r.organs[i] | region))]
    return candidates[0] if len(candidates) == 1 and len(r.findings) == 1 else None


def _patient_sided(r: Reading, f: LabelFacts) -> bool:
    """The facts give this label's side in the patient's terms (radiology, unless measured on the image)."""
    if f.location:
        return "patient" in f.location.lower() or ("image" not in f.location.lower() and r.facts.modality in PATIENT_SIDED)
    return r.facts.modality in PATIENT_SIDED


def _mention_after(r: Reading, b: int) -> bool:
    return any(b <= m.start and len(r.text[b:m.start].split()) <= 2 and not re.search(r"[.;:]", r.text[b:m.start]) for m in r.mentions if m.kind != "weak")


def _sides(r: Reading, stated: dict[int, set]) -> None:
    for a, b, side, image_side in _side_claims(r):
        if r._not_claim(a) and not r.lex.modalities.find(r.text[slice(*r._sentence(a))]):
            continue  # "with sudden right-sided weakness" in the history
        negated_place = [mark for (x, y, _), mark in zip(r.places, r.place_marks) if b <= x <= b + 2 or x <= a < y]
        if any(mark.negated or mark.uncertain for mark in negated_place):
            continue  # "does not involve the left hemisphere"
        if any(m.start <= a and b <= m.end and m.kind in ("label", "anatomy") for m in r.mentions):
            continue  # "heart atrium left": a side in the label's own name is the source's, not the text's claim
        lo, hi = r._sentence(a)
        normal = NORMAL.search(r.text, b, hi)
        bare = not any(b <= m.start < hi for m in r.mentions if m.kind != "weak")
        if normal and len(r.text[b:normal.start()].split()) <= 4 and (bare or not NORMAL_NOT_DENIAL.match(r.text[normal.end():normal.end() + 14])):
            continue  # "R ovary nl", "the right lobe is normal": the other side, said to be normal
        if re.match(r"\s*(?:[\w-]+\s+){0,3}(?:(?:is|are|looks?|appears?)\s+)?(?:clear|intact|preserved|patent|spared|free)\b", r.text[b:hi], re.IGNORECASE) and not any(b <= m.start < hi for m in r.mentions if m.kind != "weak"):
            continue  # "L IAC clear"
        if re.search(r"\b(?:nml|nl|normal|unremarkable)\s+$", r.text[max(lo, a - 14):a], re.IGNORECASE):
            continue  # "ovaries nml bilat"
        header = bool(r.lex.modalities.find(r.text[lo:hi]))
        if not any(lo <= m.start < hi for m in r.mentions) and any(b <= x <= b + 2 for x, _ in r._place_spans()) and not header:
            continue  # "the left kidney and the stomach look normal": a side of a structure, no finding in the sentence (a header is the study's side)
        if re.search(r"\b(?:without|no|not)\b", r.text[b:hi]) and not any(b <= m.start < hi for m in r.mentions if m.kind != "weak") and not header:
            continue  # "left breast and both axillae without suspicious enhancement"
        if re.fullmatch(r"[\s\-•*]*(?:[\w-]+\s+)?(?:side|half|hemithorax|lung|breast|kidney|lobe)?\s*:?\s*", r.text[lo:a] + r.text[b:hi], re.IGNORECASE):
            n = bisect_right(r._starts, hi - 1)
            after = r.sentences[n] if n < len(r.sentences) else (len(r.text), len(r.text))
            if hi >= len(r.text) or NORMAL.search(r.text[after[0]:after[1]]) or not any(after[0] <= m.start < after[1] for m in r.mentions if m.kind != "weak"):
                continue  # "- Right side: the right lung appears clear"
        i = r._label_at(a, b, pass_places=True)
        subject = re.match(r"[\s-]*(?:[\w-]+\s+){0,2}?(?:side|half|part|portion|aspect)\s+of\s+(?:the\s+)?(?:image|frame|field|slide|section|picture)\s+"
                           r"(?:is\s+(?:taken up|occupied|filled|dominated)\s+by|shows|contains|holds|has)\b", r.text[b:b + 80], re.IGNORECASE)
        if image_side and subject:
            later = [m for m in r.mentions if m.start >= b + subject.end() and m.label is not None and m.kind != "anatomy" or (m.start >= b + subject.end() and m.kind == "weak" and m.label is not None)]
            i = later[0].label if later else i
        if i is None and header and not image_side and side in ("left", "right"):
            i = _study_side_of(r, a, b)
        if i is None or i not in stated:
            continue
        f = r.facts.labels[i]
        if image_side and side in ("left", "right") and _patient_sided(r, f):
            side = "right" if side == "left" else "left"  # the image's left is the patient's right
        own = _sides_of(f)
        if not own or not f.count:
            continue
        r.claims += 1
        if side == "bilateral":
            organs = r.lex.organs_in(r.text[a:b])
            if organs and not organs & r.organs[i]:
                continue  # "both kidneys are normal" on a liver image
            stated[i] |= {"left", "right"}
            if not {"left", "right"} <= own:
                r.contradict("side", a, b, ", ".join(sorted(own)))
            continue
        stated[i].add(side)
        if side in ("left", "right") and len(own) > 1 and re.search(r"\b(?:both|all|each)\b(?:\s+[\w-]+){0,4}\s*$", r.text[max(lo, a - 40):a], re.IGNORECASE):
            r.contradict("side", a, b, ", ".join(sorted(own)))  # "both in the left half": every region claimed on one side
            continue
        crossing = "across the midline" in (f.location or "")
        if side not in own and not (side == "midline" and crossing) and not (side in ("left", "right") and "midline" in own and crossing):
            r.contradict("side", a, b, f.location or ", ".join(sorted(own)))


def _sizes(r: Reading, stated: dict[int, set]) -> None:
    text = r.text
    for a, b, size in r.sizes:
        if r._generic_before(a):
            continue
        i = r._label_at(a, b)
        if i is None or i not in stated:
            continue
        f = r.facts.labels[i]
        if not f.size_class or not f.count:
            continue
        if GRADED.match(text[b:b + 24]) or GRADED_BEFORE.search(text[max(0, a - 40):a]) or _part_after(r, b, r._label_at(a, b)) or _of_diagnosis(r, a, b, f):
            continue  # "moderate enhancement", "mild NPDR", "intermediate AMD": a grade, no size; "a very large cup": a part
        r.claims += 1
        stated[i].add(size)
        ranged = re.match(r"^\s*(?:-|to|or|/)\s*([\w-]+)", text[b:b + 20])
        other = r.lex.sizes.value(ranged.group(1)) if ranged else None
        between = re.search(r"([\w-]+)\s*(?:-|to|or|/)\s*$", text[max(0, a - 20):a])
        other = other or (r.lex.sizes.value(between.group(1)) if between else None)
        accepted = {size, other} - {None}
        if f.size_class in accepted:
            continue
        owner = r._owner(a, b, False)
        plural = owner is not None and re.search(r"(?:s|i|ae|a)$", text[owner.start:owner.end].lower()) and not text[owner.start:owner.end].lower().endswith(("ss", "us", "is", "sis"))
        if f.count > 1 and not plural and all(SIZE_ORDER[s] <= SIZE_ORDER[f.size_class] for s in accepted):
            continue  # one of several regions: only the largest is measured, a smaller one may be meant
        r.contradict("size", a, b, f.size_class)
    for m in PERCENT.finditer(text):
        i = r._label_at(m.start(), m.end())
        if i is None or i not in stated or not r.facts.labels[i].count:
            continue
        f = r.facts.labels[i]
        pct = float(m.group("pct"))
        if f.area_pct is not None:
            r.claims += 1
            if abs(pct - f.area_pct) > max(0.5, 0.2 * f.area_pct):
                r.contradict("size", m.start(), m.end(), f"{f.area_pct}% of the image")
        elif f.size_class:
            size = "small" if pct < 1 else "medium" if pct < 10 else "large"  # the size classes' own bounds
            r.claims += 1
            stated[i].add(size)
            lo_pct, hi_pct = {"small": (0, 1.2), "medium": (0.8, 12), "large": (8, 101)}[f.size_class]  # within a fifth of a bound: no contradiction
            if not lo_pct <= pct < hi_pct and f.count == 1:
                r.contradict("size", m.start(), m.end(), f.size_class)


def _of_diagnosis(r: Reading, a: int, b: int, f: LabelFacts) -> bool:
    """"moderate non-proliferative diabetic retinopathy" of an image labelled with its microaneurysms: the
    grade of a diagnosis the finding is a sign of, not the finding's size."""
    owner = r._owner(a, b, False)
    return owner is not None and owner.term is not None and owner.term != _term_of(f, r.lex) and owner.term in r.lex.signs


GRADED_BEFORE = re.compile(r"\b(?:index|grade|rate|activity|proliferation|differentiation|severity|degree|score|risk|uptake|enhancement)\s+(?:is|looks|appears|seems|was|of)\s+(?:[\w-]+\s+)?$", re.IGNORECASE)
GRADED = re.compile(r"^[\s-]*(?:enhancement|uptake|signal|intensity|severity|degree|grade|inflammation|dysplasia|activity|avidity|echogenicity|vascularity|"
                    r"staining|stain|proliferation|proliferative|mitotic|index|fibrosis|degeneration|retinopathy|npdr|pdr|amd|dr|steatosis|atrophy|cellularity|differentiation|risk|"
                    r"suspicion|probability|confidence|change|changes|thickening|narrowing|stenosis|dilatation|effect|number|amount of uptake)\b", re.IGNORECASE)


def _counts(r: Reading) -> None:
    text = r.text
    counted: dict[int, set] = {}  # per sentence, the labels it has counted
    stated_counts: list[tuple[int, int, int]] = []  # (position, label, upper bound) of each count read
    for c in COUNT.finditer(text):
        a, b = c.start("n"), c.end("n")
        if c.group("n").lower() in ("one", "a second", "second") and re.match(r"^\s*of\b", text[b:b + 5], re.IGNORECASE):
            continue  # "one of the nodules"
        if re.search(r"\b(?:no|without|nor|not any)\s+$", text[max(0, a - 9):a], re.IGNORECASE):
            continue  # "no additional focal abnormality": a denial, no count
        if re.match(r"\s*(?:different\s+|distinct\s+)?(?:types?|kinds?|sorts?|classes|forms|populations|patterns)\b", text[b:b + 24], re.IGNORECASE):
            continue  # "two types of bacteria": kinds, not regions
        if (NOT_COUNT_BEFORE.search(text[max(0, a - 12):a]) or re.search(r"[/\-–]\s*$|\b[A-Z]\d+\s*$", text[max(0, a - 4):a])) and c.group("n")[0].isdigit() or UNITS.match(text[b:b + 12]):
            continue
        after = [m for m in r.mentions if m.start >= b]
        if not after:
            continue
        m = after[0]
        gap = text[b:m.start]
        if len(gap.split()) > 5 or re.search(r"[.;:]|\b(?:and|or|with|in|at|on|within|per|each|from)\b|\bof\b(?!\s+(?:the\s+)?$)", gap):
            continue
        lo, _ = r._sentence(a)
        if re.search(r"[:,]", text[lo:a]) and COUNT.search(text[lo:a]) and m.label in counted.get(lo, ()):
            continue  # "eight nodes: two in the left neck, two in the right neck": the parts of a count
        if m.kind == "weak" and not m.merged and not (m.label is not None and len(r.findings) == 1 and re.search(r"s$", text[m.start:m.end]) and r.facts.modality != "dermoscopy"):
            continue  # "areas of" counts nothing; "several small bright spots" of the one finding counts it (a lesion's dots and areas on dermoscopy are its parts)
        if m.label is None or m.negated or m.uncertain:
            continue
        lo, _ = r._sentence(a)
        if re.search(r"\b(?:compatible with|consistent with|in keeping with|c/w|such as|versus|differential)\b|\bor\s*$", text[max(lo, a - 60):a], re.IGNORECASE):
            continue  # "compatible with a liposarcoma or another sarcoma": a differential, no count
        f = r.facts.labels[m.label]
        if not f.count:
            continue
        low, high = _count_range(c.group("q"), c.group("n"))
        word = c.group("n").lower()
        if word in ("cluster of", "a cluster of", "a group of", "a clump of", "a sheet of", "a nest of") and re.search(r"cells?$", text[m.start:m.end], re.IGNORECASE):
            low, high = 1, 1  # "a cluster of tumour cells": one region of many cells
        if high < f.count and any(lab == m.label and start < a and hi_ >= high for start, lab, hi_ in stated_counts):
            continue  # "Forty-two nuclei ... A few nuclei are closely apposed": a few of them
        stated_counts.append((a, m.label, high))
        counted.setdefault(r._sentence(a)[0], set()).add(m.label)
        r.claims += 1
        if not low <= f.count <= high:
            r.contradict("count", c.start() if c.group("q") else a, m.end, f"{f.count} region(s) of {f.label}")


def _looks(r: Reading) -> None:
    shades = [(a, b, SHADE[fam]) for a, b, families in r.colours for fam in families if fam in SHADE and len(families) == 1
              and not re.match(r"[\s-]*(?:background|bg|backdrop|field|surround|surroundings|matrix|stroma|space|spaces|lumen|(?:acoustic\s+)?shadow\w*|halo|rim)\b", r.text[b:b + 16], re.IGNORECASE)]
    for a, b, direction in sorted(r.looks + shades):
        if re.search(r"\bADC\b", r.text[max(0, a - 16):b + 28]):
            continue  # "stays dark on the ADC map": the inverse of diffusion, no claim about the measured image
        if r._generic_before(a) or _part_after(r, b, r._label_at(a, b)):
            continue  # "a photopenic centre": a part of it
        i = r._label_at(a, b)
        if i is None:
            continue
        f = r.facts.labels[i]
        measured = r.lex.direction(f.contrast)
        if measured is None or not f.count or ((a, b, direction) in shades and f.colour and normal_form(r.text[a:b]) not in PURE_SHADES):
            continue  # a colour word is a shade only where no colour is measured
        r.claims += 1
        ranged = re.search(r"(?:-|\bto|/|\bor)\s*$", r.text[max(0, a - 6):a]) or re.match(r"^\s*(?:-|to\b|/|or\b)", r.text[b:b + 5])
        if {direction, measured} == {"brighter", "darker"} or ("similar" in (direction, measured) and direction != measured and not ranged):
            r.contradict("appearance", a, b, f.contrast)
    said: dict[int, list] = {}
    for a, b, families in r.colours:
        if r._generic_before(a) or normal_form(r.text[a:b]) in PURE_SHADES:
            continue  # a shade, not a hue ("dark blot haemorrhages" of red ones): read against the contrast
        i = r._label_at(a, b)
        after = [m for m in r.mentions if m.start >= b and m.kind in ("label", "head", "weak")]
        lo, _ = r._sentence(a)
        before = [m for m in r.mentions if m.end <= a and m.label == i and lo <= m.start]
        attached = (after and after[0].label == i and len(r.text[b:after[0].start].split()) <= 3) \
            or (before and a - before[-1].end <= 40 and re.fullmatch(r"[\s,]*(?:(?:of|in|staining|stained|stain|coloured|colored|appearing|(?:that|which) (?:are|is|look|looks|appear|appears|stain|stains))\s+)?(?:[\w-]+\s+)?", r.text[before[-1].end:a])) \
            or re.search(r"(?:\b(?:looks?|appears?|is|are|seems?|appearing|as)|'s)\s+(?:[\w-]+\s+){0,2}$", r.text[max(lo, a - 30):a], re.IGNORECASE) \
            or re.match(r"^\s*(?:base|floor|surface)\b", r.text[b:b + 12], re.IGNORECASE)
        parts = after and after[0].kind == "weak" and not after[0].merged and re.search(r"s$", r.text[after[0].start:after[0].end]) and len(r.text[b:after[0].start].split()) <= 1
        if parts and i is not None and r.facts.labels[i].count == 1:
            continue  # "a few blue-grey areas toward the centre" of one lesion: parts of it
        if i is not None and r.facts.labels[i].colour and attached and not _part_after(r, b, i):
            said.setdefault(i, []).append((a, b, families))  # "a pale pink lesion" (not "a white scar-like patch" in a brown one)
    for i, colours in said.items():
        f = r.facts.labels[i]
        measured = r.lex.colour_families(f.colour)
        r.claims += 1
        shade = re.match(r"(dark|deep|light|pale)\b", (f.colour or "").lower())
        opposite = {"dark": ("light", "pale"), "deep": ("light", "pale"), "light": ("dark", "deep"), "pale": ("dark", "deep")}.get(shade.group(1)) if shade else ()
        if measured and not any(families & measured for _, _, families in colours):
            a, b, _ = colours[0]
            r.contradict("appearance", a, b, f.colour)
        elif opposite and all(re.match(r"(?:%s)\b" % "|".join(opposite), r.text[a:b], re.IGNORECASE) for a, b, _ in colours):
            a, b, _ = colours[0]
            r.contradict("appearance", a, b, f.colour)  # "light tan" of a dark brown lesion


NONE_SEEN = re.compile(r"\bnone\s+(?:of\s+(?:them|these|those)\s+)?(?:(?:are|is|were|was|can be|could be)\s+)?(?:seen|identified|present|visible|noted|found|detected|evident)\b", re.IGNORECASE)


def _denial_phrases(r: Reading) -> None:
    """A phrase the vocabulary gives as saying a finding is absent ("the costophrenic angles are sharp",
    "heart size is normal") on an image that has it."""
    for a, b, term in r.lex.denials.find(r.text):
        lo, hi = r._sentence(a)
        if r._not_claim(a) or GENERIC.search(r.text[lo:a]):
            continue
        said = {side for x, _, side, _ in _side_claims(r) if lo <= x < hi}
        for i in r.findings:
            f = r.facts.labels[i]
            if said and _sides_of(f) and not said & _sides_of(f) and "bilateral" not in said:
                continue  # "the right lung is fully expanded" beside a left pneumothorax
            if f.count and (_term_of(f, r.lex) == term or r.lex.kin(_term_of(f, r.lex), term)):
                r.claims += 1
                r.contradict("absent_finding", a, b, f"{f.label} is on the image")
                break


def _pronoun_denials(r: Reading) -> None:
    """"Blasts are not increased; none are seen in this field": "none" denies the finding just named."""
    for n in NONE_SEEN.finditer(r.text):
        lo, _ = r._sentence(n.start())
        previous = bisect_right(r._starts, lo - 1) - 1
        since = r.sentences[previous][0] if previous >= 0 else lo
        before = [m for m in r.mentions if since <= m.start and m.end <= n.start() and m.kind != "weak"]
        if not before or r._not_claim(n.start()) or ELSEWHERE.search(r.text[lo:n.end()]):
            continue
        m = before[-1]  # the thing just named ("Pleural effusion: none seen" denies the effusion, not an earlier nodule)
        if m.label is None or m.kind not in ("label", "head"):
            continue
        f = r.facts.labels[m.label]
        if f.count and m.label in r.findings:
            r.claims += 1
            r.contradict("absent_finding", n.start(), n.end(), f"{f.label} is on the image")


def _normal_statements(r: Reading) -> None:
    """"The liver is unremarkable", "normal study", "lungs are clear": a denial of the findings in that
    organ (or of every finding, said of the study)."""
    if not r.findings:
        return
    for n in NORMAL.finditer(r.text):
        lo, hi = r._sentence(n.start())
        sentence = r.text[lo:hi]
        if NORMAL_NOT_DENIAL.match(r.text[n.end():n.end() + 14]) or re.search(r"\b(?:of|to|with|than)\s+(?:a\s+|the\s+)?$", r.text[max(lo, n.start() - 10):n.start()]):
            continue  # "normal size", "of normal calibre"
        if ELSEWHERE.search(sentence) or re.search(r"\bextra-?[a-z]{4,}", n.group(0), re.IGNORECASE) or r._not_claim(n.start()) \
                or any(lo <= m.start < hi and m.kind in ("label", "head") for m in r.mentions):  # "no extrahepatic disease": elsewhere
            continue
        said_sides = {side for a, _, side, _ in _side_claims(r) if lo <= a < hi}  # computed once (cached on the reading)
        named = [(a, b, owners) for a, b, owners in r.places if lo <= a < hi]
        if len({o for _, _, owners in named for o, _ in owners}) > 1 or len(named) > 1:
            continue  # a list of structures said to be normal: the neighbours, not the finding's organ
        organs = {organ for a, b, owners in named for organ, _ in owners
                  if normal_form(r.text[a:b]) in (normal_form(organ), normal_form(organ) + "s") or re.match(r"\s+(?:mucosa|tissue|parenchyma)\b", r.text[b:b + 14])}
        study = (bool(STUDY.search(sentence)) or bool(GLOBAL_DENIAL.fullmatch(n.group(0)))) and not named \
            and not any(lo <= a < hi and (r.region is None or name != r.region.name) for a, _, name in r.region_words)  # "whole body: no FDG-avid disease"
        qualified = [stems for word, stems in DENIAL_QUALIFIERS.items() if re.search(rf"\b{word}\b", n.group(0), re.IGNORECASE)]
        for i in r.findings:
            f = r.facts.labels[i]
            if said_sides and _sides_of(f) and not said_sides & _sides_of(f):
                continue  # "the right thigh looks normal" for a left-sided mass
            named_as = normal_form(f"{f.label} {_term_of(f, r.lex) or ''}")
            if qualified and not any(stem in named_as for stems in qualified for stem in stems):
                continue  # "no metastatic disease" beside the primary tumour
            if organs & {o for o in r.organs[i] if r.lex.regions.get(o) is not None and r.lex.regions[o].surface}:
                continue  # "normal skin" around a skin lesion: the background
            if study or organs & (r.organs[i] or (r.region.core if r.region is not None and len(r.region.core) == 1 else set())):
                r.claims += 1
                r.contradict("absent_finding", n.start(), n.end(), f"{f.label} is on the image")
                break


SHADE = {"black": "darker", "white": "brighter"}  # a shade of grey said as a colour ("a dark spot", "a white opacity")
PURE_SHADES = frozenset({"dark", "darker", "bright"})  # shades without a hue: read against the contrast, never as a colour
BRIGHTER_WORDS = ("brighter", "hyper", "more radiopaque", "more fdg-avid", "redder", "opacity", "denser", "enhancing")
DARKER_WORDS = ("darker", "hypo", "more radiolucent", "less fdg-avid", "anechoic", "air")


def annotation_suspects(facts: Facts, lex: Lexicon | None = None) -> list[dict]:
    """Findings whose measured contrast says the opposite of the appearance the vocabulary expects for
    this modality (a "lung opacity" measuring darker than the lung around it)."""
    out = []
    for f in facts.findings:
        if not (f.expected and f.contrast):
            continue
        expected, measured = f.expected.lower(), f.contrast.lower()
        expects_bright = any(w in expected for w in BRIGHTER_WORDS) and not any(w in expected for w in DARKER_WORDS)
        expects_dark = any(w in expected for w in DARKER_WORDS) and not any(w in expected for w in BRIGHTER_WORDS)
        if (expects_bright and any(w in measured for w in DARKER_WORDS)) or (expects_dark and any(w in measured for w in BRIGHTER_WORDS)):
            out.append({"label": f.label, "expected": f.expected, "measured": f.contrast})
    return out
