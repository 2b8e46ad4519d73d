"""Reading clinical text: sentences, and which finding and organ mentions are negated or uncertain.

A blank spaCy English pipeline (no model to download) with a sentencizer that also ends a clause at `;`, `:`
and a line break, and negspaCy's NegEx twice: with its `en_clinical` termset for negation ("no focal
consolidation", "without any focal lesion", "no polyp is seen") and with an uncertainty termset
("cannot be excluded", "possible", "suspicious for"; general statements such as "can spread" or "is
typically" too). The mentions themselves are found by the lexicon's patterns and handed to spaCy as
entities, so that one vocabulary decides what is a finding. As in Chapman's NegEx, a preceding trigger
reaches only a few words ahead."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

PRECEDING_WINDOW = 6  # tokens a preceding trigger reaches (NegEx's original scope is five terms, lists make it longer)

# Negation triggers that do not deny this image's finding: "no other lesion", "no new nodules".
PSEUDO_NEGATIONS = [
    "no other", "no additional", "no further", "no new", "no second", "no separate", "no more", "no other focal", "no additional focal",
    "without other", "without additional", "without further", "no evidence of other", "no evidence of additional", "no evidence of further",
    "no other definite", "not only", "no change", "no significant change", "no interval change", "no increase", "no decrease", "not changed",
    "no longer", "not well", "no definite other", "no sign of other", "no signs of other", "without knowing", "without seeing", "without more",
    "without clinical", "without a", "not possible to", "no prior", "no comparison", "without comparison", "no previous", "no iv contrast",
    "without iv contrast", "without contrast", "no contrast", "no oral contrast", "non-contrast", "without intravenous contrast",
    "can't be ruled out", "cannot be ruled out", "can not be ruled out", "can't be excluded", "cannot be excluded", "not be ruled out", "not excluded",
    "not specific for", "but not specific for", "not specific", "nonspecific", "non-specific", "not diagnostic of",
    "no visible uptake in", "no uptake in", "no significant uptake in", "no enhancement of", "no enhancement in", "no flow in", "no signal in",
]
UNCERTAIN_PRECEDING = [
    "possible", "possibly", "probable", "probably", "likely", "most likely", "suspicious for", "suspicious of", "suspected", "suspect",
    "questionable", "question of", "may represent", "may be", "may reflect", "may indicate", "might be", "might represent", "might indicate",
    "might suggest", "could be", "could represent", "could indicate", "could suggest", "could reflect", "concerning for", "suggestive of",
    "suggesting", "suggests", "worrisome for", "differential", "differential diagnosis", "differential includes", "versus", "vs", "rule out",
    "r/o", "consider", "considered", "cannot exclude", "can't exclude", "cannot rule out", "presumed", "presumably", "raising the possibility of",
    "raises the possibility of", "raise the possibility of", "possibility of", "favour", "favor", "favoured", "favored", "such as", "e.g.",
    "for example", "may", "might", "could", "often", "typically", "usually", "commonly", "frequently", "sometimes",
    "tend to", "tends to", "is known to", "are known to", "is expected to", "are expected to", "expected",
    "risk of", "risk factor", "associated with", "indicative of", "characteristic of", "typical of", "in the setting of", "to evaluate for",
    "to assess for", "evaluate for", "assess for", "check for", "screen for", "screening for", "potential", "potentially", "uncertain",
    "indeterminate", "equivocal", "not specific for", "not diagnostic of", "nonspecific for", "precursor of", "precursor to", "precursor lesion of", "precursor lesions of", "progress to", "progression to",
    "predisposes to", "predisposing to", "leads to", "lead to", "can lead to", "complication of", "complications such as",
    "history of", "known", "patient with", "individual with", "person with", "subject with", "patients with", "eye with", "woman with", "man with", "in a patient with", "status post", "s/p", "treated for", "presented with", "presenting with",
    "presents with", "diagnosed with", "year-old", "year old", "staging", "restaging", "?",
]
NEGATION_FOLLOWING = [
    "can be ruled out", "is ruled out", "has been ruled out", "ruled out", "negative", "absent", "not present", "resolved", "has resolved",
    "have resolved", "not seen", "not visualised", "not visualized", "not identified", "not present", "not demonstrated", "is absent", "are absent",
    "not evident", "not detected", "not appreciated", "not visible", "is not seen", "are not seen", "has resolved", "have resolved",
    "is not a feature", "are not a feature", "are not features", "not a feature", "none seen", "none identified", "none detected", "none noted",
]
NEGATION_EXTRA = [
    "can't find", "cannot find", "could not find", "couldn't find", "don't find", "do not find", "don't see", "do not see", "don't seem",
    "doesn't seem", "don't appear", "doesn't appear", "cannot see", "can't see", "no convincing", "not any", "no obvious", "no definite",
    "no visible", "isn't any", "aren't any", "there is no", "there are no", "without evidence of", "nothing to suggest", "nothing suggests",
    "nothing suggestive of", "no features of", "no feature of", "no sign of", "no signs of", "clear of", "devoid of", "no evidence of any",
    "no features suggestive of", "not suggestive of", "not consistent with", "argues against", "no evidence of", "free of", "negative for",
]
UNCERTAIN_FOLLOWING = [
    "cannot be excluded", "can not be excluded", "cannot be ruled out", "can't be ruled out", "can't be completely ruled out", "cannot be completely ruled out",
    "cannot be completely excluded", "can't be completely excluded", "can't be excluded completely", "can't be excluded", "is not excluded", "not excluded", "is possible",
    "is likely", "is suspected", "are suspected", "is questionable", "is favoured", "is favored", "is a consideration", "should be considered",
    "is considered", "are possible", "are likely", "less likely", "is uncertain", "cannot be entirely excluded", "not entirely excluded",
    "would be", "is in the differential", "are in the differential", "remains a possibility", "is a possibility",
    "not assessable", "cannot be assessed", "can't be assessed", "not evaluable", "cannot be evaluated", "not assessed",
]
TERMINATION_EXTRA = ["but", "however", "although", "though", "whereas", "while", "with", "and a", "and an", "along with", "as well as", "except", "apart from",
                     "aside from", "yet", "which is", "that is", "there is", "there are", "is seen", "is noted", "is present", "are seen", "are noted", "are present",
                     "uptake", "enhancement", "signal", "flow", "vascularity", "shadowing", "restriction"]


HEADED_DENIAL = re.compile(r":(?=[ \t]*(?:not\b|none\b|absent\b|negative\b|nil\b|no\b))", re.IGNORECASE)


@dataclass
class Marked:
    start: int
    end: int
    negated: bool = False
    uncertain: bool = False


@lru_cache(maxsize=1)
def pipeline():
    """(nlp, negation, uncertainty): built once per process (about 0.3 s)."""
    import spacy
    from negspacy.negation import Negex  # noqa: F401  registers the `negex` factory
    from negspacy.termsets import termset

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer", config={"punct_chars": [".", "!", "?", ";", ":", "\n", "\n\n", "\n\n\n", "•"]})
    clinical = termset("en_clinical").get_patterns()
    negation = {**clinical, "pseudo_negations": [*clinical["pseudo_negations"], *PSEUDO_NEGATIONS],
                "preceding_negations": [*clinical["preceding_negations"], *NEGATION_EXTRA],
                "following_negations": [*clinical["following_negations"], *NEGATION_FOLLOWING],
                "termination": [*clinical["termination"], *TERMINATION_EXTRA]}
    uncertainty = {"pseudo_negations": ["no change", "not only"], "preceding_negations": UNCERTAIN_PRECEDING,
                   "following_negations": UNCERTAIN_FOLLOWING, "termination": [*clinical["termination"], *TERMINATION_EXTRA]}
    negex = nlp.add_pipe("negex", name="negation", config={"neg_termset": negation, "extension_name": "negex"})
    unsure = nlp.add_pipe("negex", name="uncertainty", config={"neg_termset": uncertainty, "extension_name": "uncertain"})
    return nlp, negex, unsure


def _words(doc, a: int, b: int) -> int:
    """Words between two token positions: "FDG-avid soft-tissue" is two words, not six tokens."""
    return sum(1 for t in doc[a:b] if not t.is_punct)


def _listed(doc, a: int, b: int) -> bool:
    """A list of findings runs from the trigger to the entity ("no effusion, consolidation, nodules or
    pneumothorax"): each comma or "or" between them follows another entity, and no verb breaks the list
    ("no prior imaging is available, CT shows a lesion" denies nothing)."""
    between = [e for e in doc.ents if a <= e.start and e.end <= b]
    joints = [t for t in doc[a:b] if t.text in (",", "or", "nor")]
    if not between or len(joints) > len(between) or _words(doc, a, b) > 24:
        return False
    return not any(t.lower_ in LIST_BREAKERS for t in doc[a:b])


LIST_BREAKERS = frozenset({"is", "are", "was", "were", "shows", "show", "showing", "demonstrates", "demonstrate", "reveals", "contains", "seen", "noted",
                           "identified", "present", "available", "there", "but", "with", "and", "in", "at", "within", "on", "of"})


def _marks(component, doc) -> set[int]:
    """The entities (by index) NegEx marks, a preceding trigger reaching at most PRECEDING_WINDOW tokens."""
    preceding, following, terminating = component.process_negations(doc)
    boundaries = component.termination_boundaries(doc, terminating)
    marked = set()
    for i, ent in enumerate(doc.ents):
        for lo, hi in boundaries:
            if lo <= ent.start < hi:
                break
        else:
            continue
        before = [end for _, _, end in preceding if lo <= end <= ent.start]
        after = [start for _, start, _ in following if ent.end <= start < hi]
        if any(_words(doc, end, ent.start) <= PRECEDING_WINDOW or _listed(doc, end, ent.start) for end in before) or after:
            marked.add(i)
    return marked


@dataclass
class Parsed:
    sentences: list[tuple[int, int]]  # (start, end) in code points
    marks: list[Marked]  # per span handed in, in that order


def parse(text: str, spans: list[tuple[int, int]]) -> Parsed:
    """Sentence bounds of `text`, and for each span (a finding or organ mention) whether it is negated or
    uncertain."""
    from spacy.tokens import Span

    nlp, negation, uncertainty = pipeline()
    doc = nlp.make_doc(HEADED_DENIAL.sub(" ", text))  # "Malaria parasites: not identified" is one clause (same length: offsets hold)
    for name, proc in nlp.pipeline:
        if name == "sentencizer":
            doc = proc(doc)
    ents, index = [], {}
    taken: set[int] = set()
    for n, (a, b) in enumerate(spans):
        span = doc.char_span(a, b, alignment_mode="expand")
        if span is None or any(t in taken for t in range(span.start, span.end)):
            continue
        taken.update(range(span.start, span.end))
        index[n] = len(ents)
        ents.append(Span(doc, span.start, span.end, label="MENTION"))
    order = sorted(range(len(ents)), key=lambda i: ents[i].start)
    doc.ents = [ents[i] for i in order]
    position = {i: order.index(i) for i in range(len(ents))}
    negated, uncertain = _marks(negation, doc), _marks(uncertainty, doc)
    marks = []
    for n, (a, b) in enumerate(spans):
        i = index.get(n)
        k = position.get(i) if i is not None else None
        marks.append(Marked(a, b, k in negated if k is not None else False, k in uncertain if k is not None else False))
    return Parsed([(s.start_char, s.end_char) for s in doc.sents], marks)
