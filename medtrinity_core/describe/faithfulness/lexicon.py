"""The words the faithfulness reader knows, compiled once from the vocabulary file (its terms and its
`reading:` part): modality and technique words, body regions and the organs they hold, organs and their
places (with the sides places imply), finding names and generic heads, size classes, appearance
directions and colour families. Nothing here is a word list of its own: every word comes from the file."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from medtrinity_core.knowledge.vocabulary import Vocabulary, load_vocabulary, normal_form

ALL = "all"  # a region holding every organ (whole body)


def _flexible(word: str) -> str:
    """A word or phrase as a pattern: spaces and hyphens interchangeable, `&` with or without spaces."""
    parts = re.split(r"[\s\-–]+", word.strip())
    return r"[\s\-–]*".join(r"\s*&\s*".join(re.escape(q).replace("'", "['’]?").replace("’", "['’]?") for q in p.split("&")) for p in parts if p)


SPELLINGS = (("oedema", "edema"), ("haem", "hem"), ("tumour", "tumor"), ("oesophag", "esophag"), ("caec", "cec"), ("foet", "fet"), ("paed", "ped"),
             ("anaem", "anem"), ("ischaem", "ischem"), ("leukaem", "leukem"), ("naev", "nev"), ("seborrhoe", "seborrhe"), ("centre", "center"),
             ("calibre", "caliber"), ("colour", "color"), ("grey", "gray"), ("haematoma", "hematoma"), ("oestr", "estr"), ("litre", "liter"), ("metre", "meter"))


def spellings(word: str) -> set[str]:
    """A word in British and American spelling ("oedema", "edema"); an apostrophe may be left out."""
    out = {word}
    for british, american in SPELLINGS:
        for w in list(out):
            low = w.lower()
            if british in low:
                out.add(re.sub(british, american, w, flags=re.IGNORECASE))
            elif american in low and not _cased(w):
                out.add(re.sub(american, british, w, flags=re.IGNORECASE))
    return out | {w.replace("'", "").replace("’", "") for w in out if "'" in w or "’" in w}


def _cased(word: str) -> bool:
    """An abbreviation written in capitals (CT, US, PET, H&E, T2W) is matched with its case."""
    letters = re.sub(r"[^A-Za-z]", "", word)
    return len(letters) >= 1 and letters.upper() == letters and len(word) <= 8


@dataclass(frozen=True)
class Matcher:
    """Finds the longest phrases of a table in a text: (start, end, value) per match, case-folded for
    ordinary words and exact for abbreviations in capitals."""

    folded: re.Pattern | None
    exact: re.Pattern | None
    values: dict  # the phrase as matched (normal form; exact phrases as written) -> value
    compact: dict  # the same without spaces and hyphens, lower case ("t2weighted") -> value

    @classmethod
    def of(cls, table: dict[str, object], plural: bool = False) -> Matcher:
        table = {variant: value for word, value in table.items() for variant in sorted(spellings(word))} | table
        folded = sorted({w for w in table if not _cased(w)}, key=lambda w: (-len(w), w))
        exact = sorted({w for w in table if _cased(w)}, key=lambda w: (-len(w), w))
        if plural:
            table = {variant: value for word, value in table.items() for variant in (word, *_plurals(word))} | table
            folded = sorted({w for w in table if not _cased(w)}, key=lambda w: (-len(w), w))
            exact = sorted({w for w in table if _cased(w)}, key=lambda w: (-len(w), w))
        tail = r"(?:s|es)?" if plural else ""

        def pattern(words, flags):
            if not words:
                return None
            return re.compile(r"(?<![\w&])(?:" + "|".join(_flexible(w) for w in words) + r")" + tail + r"(?![\w&]|-like|-shaped)", flags)

        values = {normal_form(w): v for w, v in table.items() if not _cased(w)}
        values.update({w: v for w, v in table.items() if _cased(w)})
        compact: dict = {}
        for w, v in values.items():
            compact.setdefault(re.sub(r"[\s\-]+", "", w).lower(), v)
        return cls(pattern(folded, re.IGNORECASE), pattern(exact, 0), values, compact)

    def value(self, said: str):
        if said in self.values:
            return self.values[said]
        said = said.replace("’", "'")
        if said in self.values:
            return self.values[said]
        for tail in ("es", "s"):  # "MAs", "LNs": an abbreviation's plural
            if said.endswith(tail) and said[: -len(tail)] in self.values:
                return self.values[said[: -len(tail)]]
        key = normal_form(said).replace("&", " & ")
        key = re.sub(r"\s+", " ", key).strip()
        for candidate in (key, normal_form(said)):
            if candidate in self.values:
                return self.values[candidate]
            for tail in ("es", "s"):
                if candidate.endswith(tail) and candidate[: -len(tail)] in self.values:
                    return self.values[candidate[: -len(tail)]]
        return self.compact.get(re.sub(r"[\s\-]+", "", said).lower())

    def find(self, text: str) -> list[tuple[int, int, object]]:
        hits = []
        for pattern in (self.exact, self.folded):
            if pattern is None:
                continue
            for m in pattern.finditer(text):
                value = self.value(m.group(0))
                if value is not None:
                    hits.append((m.start(), m.end(), value))
        return longest(hits)


def _plurals(word: str) -> tuple[str, ...]:
    """Latin and Greek plurals a regular "s" misses: glomerulus -> glomeruli, diverticulum -> diverticula,
    metastasis -> metastases, varix -> varices, opacity -> opacities."""
    for singular, plural in (("us", "i"), ("um", "a"), ("is", "es"), ("ix", "ices"), ("ex", "ices"), ("ax", "aces"), ("y", "ies"), ("on", "a")):
        if word.endswith(singular) and len(word) > len(singular) + 2 and not _cased(word) and word not in ("pylorus", "sinus", "virus", "fundus", "uterus", "fetus", "foetus"):
            return (word[: -len(singular)] + plural,)
    return ()


def longest(hits: list[tuple]) -> list[tuple]:
    """Non-overlapping matches, the longest winning (then the earliest)."""
    out: list[tuple] = []
    for hit in sorted(hits, key=lambda h: (-(h[1] - h[0]), h[0])):
        if all(hit[1] <= o[0] or hit[0] >= o[1] for o in out):
            out.append(hit)
    return sorted(out)


@dataclass(frozen=True)
class ModalityWord:
    modality: str
    organ: str | None
    region: str | None
    strict: bool = False  # names this modality only: another modality's `also` does not take it (electron microscopy)


@dataclass(frozen=True)
class Region:
    name: str
    words: tuple[str, ...]
    holds: frozenset[str]  # organ terms; ALL for every organ
    core: frozenset[str] = frozenset()  # the organs that make it this region (another region whose core shares none contradicts)
    surface: bool = False  # a body surface (skin): any body site named on it is where it lies, no contradiction


@dataclass(frozen=True)
class Lexicon:
    modalities: Matcher  # -> ModalityWord
    compatible: dict[str, frozenset[str]]  # a modality -> others a text may name for it (histopathology, microscopy)
    beside: dict[str, frozenset[str]]  # a modality -> others a text may name only beside it ("PET/CT" for a PET image)
    regions: dict[str, Region]  # by normal form of the name
    region_words: Matcher  # -> region name
    places: Matcher  # -> ((organ, side | None), ...)
    findings: Matcher  # every vocabulary finding's names -> term
    heads: frozenset[str]
    weak_heads: frozenset[str]
    parts: frozenset[str]  # words naming a part of any organ ("neck", "head", "tail")
    head_words: Matcher  # -> the head, normal form
    sizes: Matcher  # -> small | medium | large
    appearance: Matcher  # -> brighter | darker | similar
    colours: Matcher  # -> frozenset of families
    organ_of: dict[str, str]  # a finding term -> its organ
    broader: dict[str, str]  # a finding term -> the term it is a kind of
    signs: dict[str, frozenset[str]]  # a diagnosis -> the findings that show it
    denials: Matcher  # phrases saying a finding is absent ("heart size is normal") -> the finding's term
    vocabulary: Vocabulary
    memo: dict = field(default_factory=dict, compare=False, hash=False, repr=False)  # per-label results the scorer computes once per lexicon

    def direction(self, measured: str | None) -> str | None:
        """brighter | darker | similar for a measured contrast phrase ("hypodense", "more radiolucent")."""
        if not measured:
            return None
        hits = self.appearance.find(measured)
        return hits[0][2] if hits else None

    def colour_families(self, colour: str | None) -> frozenset[str]:
        if not colour:
            return frozenset()
        return frozenset().union(*(v for _, _, v in self.colours.find(colour))) if self.colours.find(colour) else frozenset()

    def known(self, word: str) -> bool:
        """A word the lexicon already reads as something (a modality, place, region, finding or head)."""
        return any(m.value(word) is not None for m in (self.modalities, self.places, self.region_words, self.findings, self.head_words))

    def kin(self, a: str | None, b: str | None) -> bool:
        """Two terms name the same finding, one is a kind of the other, or one is a sign of the other (a
        diagnosis such as "NPDR" said of an image labelled with its microaneurysms)."""
        if not a or not b:
            return False
        seen_a, seen_b = self._ancestry(a), self._ancestry(b)
        if a in seen_b or b in seen_a:
            return True
        return any(b in self.signs.get(x, ()) for x in seen_a) or any(a in self.signs.get(x, ()) for x in seen_b)  # a diagnosis and its sign

    def _ancestry(self, term: str) -> set[str]:
        out = {term}
        while term in self.broader and self.broader[term] not in out:
            term = self.broader[term]
            out.add(term)
        return out

    def organs_in(self, phrase: str) -> set[str]:
        """The organs a phrase names ("left kidney", "liver lesion", "hepatic tumour")."""
        found = {organ for _, _, owners in self.places.find(phrase) for organ, _ in owners}
        term = self.vocabulary.lookup(phrase)
        if term is not None:
            if term.category == "anatomy":
                found.add(term.term)
            elif term.term in self.organ_of:
                found.add(self.organ_of[term.term])
        return found

    def region(self, body_region: str | None) -> Region | None:
        """The region a source states, by its name; else the regions its words name ("fetal abdomen"); else the
        organ it names ("liver", "left kidney"), holding what the regions around that organ hold (an image of
        an organ shows its neighbours)."""
        if not body_region:
            return None
        key = normal_form(body_region)
        if key in self.regions:
            return self.regions[key]
        if " and ".join(key.split()) in self.regions:
            return self.regions[" and ".join(key.split())]  # "head/neck": head and neck
        words = set(key.split())
        inside = [r for name, r in self.regions.items() if set(name.split()) <= words]  # "fetal abdomen": the abdomen
        organs = self.organs_in(body_region)  # "left kidney", "liver": a region that is an organ
        if inside:
            return Region(key, tuple(w for r in inside for w in (r.name, *r.words)), frozenset().union(organs, *(r.holds for r in inside)),
                          frozenset().union(organs, *(r.core for r in inside)))
        return Region(key, (key,), frozenset(organs), frozenset(organs)) if organs else None

    def around(self, region: Region) -> frozenset[str]:
        """What the regions around an organ-level region hold (an image of the kidney shows the liver beside it)."""
        if ALL in region.holds or len(region.core) > 2:
            return region.holds
        return frozenset().union(region.holds, *(r.holds for r in self.regions.values() if r.holds & region.core and len(r.core) > 2))


def _modality_table(vocabulary: Vocabulary) -> tuple[dict, dict]:
    words: dict[str, ModalityWord] = {}
    compatible: dict[str, set[str]] = {}
    beside: dict[str, set[str]] = {}
    for entry in vocabulary.reading.get("modalities") or []:
        modality = str(entry["modality"])
        compatible.setdefault(modality, set()).update(str(m) for m in entry.get("also") or ())
        beside.setdefault(modality, set()).update(str(m) for m in entry.get("beside") or ())
        for word in entry.get("words") or ():
            previous = words.get(str(word))
            organ, region = entry.get("organ"), entry.get("region")
            if previous is None or organ or region or entry.get("strict"):  # the entry naming what the technique images wins
                words[str(word)] = ModalityWord(modality, str(organ) if organ else None, str(region) if region else None, bool(entry.get("strict")))
    return words, {k: frozenset(v) for k, v in compatible.items()}, {k: frozenset(v) for k, v in beside.items()}


def _place_table(vocabulary: Vocabulary) -> dict[str, tuple]:
    owners: dict[str, set] = {}
    for term in vocabulary.terms:
        if term.category != "anatomy":
            continue
        for name in (term.term, *term.synonyms):
            if len(name) > 2 or _cased(name):
                owners.setdefault(name, set()).add((term.term, None))
        for phrase, side in term.places:
            owners.setdefault(phrase, set()).add((term.term, side))
    return {k: tuple(sorted(v, key=str)) for k, v in owners.items()}


def _finding_table(vocabulary: Vocabulary) -> dict[str, str]:
    names: dict[str, str] = {}
    for term in vocabulary.terms:
        if term.category != "finding":
            continue
        for name in (term.term, *term.synonyms):
            if len(name) > 3 or (_cased(name) and len(name) >= 3):
                names.setdefault(name if _cased(name) else normal_form(name), term.term)
    return names


def build_lexicon(vocabulary: Vocabulary) -> Lexicon:
    reading = vocabulary.reading
    modality_words, compatible, beside = _modality_table(vocabulary)
    regions = {}
    for name, spec in (reading.get("regions") or {}).items():
        holds = frozenset(str(h) for h in spec.get("holds") or ())
        core = frozenset(str(h) for h in spec.get("core") or ()) or holds
        regions[normal_form(str(name))] = Region(normal_form(str(name)), tuple(str(w) for w in spec.get("words") or ()), holds, core, bool(spec.get("surface")))
    region_words: dict[str, str] = {}
    for region in regions.values():
        for word in region.words or (region.name,):  # a region's key is how sources name it; its words how texts do
            region_words.setdefault(word, region.name)
    heads = frozenset(normal_form(h) for h in reading.get("heads") or ())
    sizes = {str(w): size for size, words in (reading.get("sizes") or {}).items() for w in words}
    appearance = {str(w): direction for direction, words in (reading.get("appearance") or {}).items() for w in words}
    colours: dict[str, set] = {}
    for family, words in (reading.get("colours") or {}).items():
        for w in words:
            colours.setdefault(str(w), set()).add(str(family))
    return Lexicon(
        modalities=Matcher.of(modality_words), compatible=compatible, beside=beside, regions=regions, region_words=Matcher.of(region_words),
        places=Matcher.of(_place_table(vocabulary), plural=True), findings=Matcher.of(_finding_table(vocabulary), plural=True),
        heads=heads, weak_heads=frozenset(normal_form(h) for h in reading.get("weak_heads") or ()), parts=frozenset(normal_form(p) for p in reading.get("parts") or ()),
        head_words=Matcher.of({h: h for h in heads}), sizes=Matcher.of(sizes), appearance=Matcher.of(appearance),
        colours=Matcher.of({k: frozenset(v) for k, v in colours.items()}),
        organ_of={t.term: t.organ for t in vocabulary.terms if t.organ}, broader={t.term: t.broader for t in vocabulary.terms if t.broader},
        signs={t.term: frozenset(t.signs) for t in vocabulary.terms if t.signs},
        denials=Matcher.of({phrase: t.term for t in vocabulary.terms for phrase in t.denied_by}),
        vocabulary=vocabulary,
    )


_BUILT: dict[int, tuple[Vocabulary, Lexicon]] = {}


def lexicon(extra: str | None = None) -> Lexicon:
    """The lexicon of the bundled vocabulary, or of it extended by a user's file (built again when that
    file changes, as the vocabulary is read again)."""
    vocabulary = load_vocabulary(extra)
    built = _BUILT.get(id(vocabulary))
    if built is None or built[0] is not vocabulary:
        while len(_BUILT) >= 8:  # a long-running server whose user edits the file keeps only the recent ones
            _BUILT.pop(next(iter(_BUILT)))
        built = _BUILT[id(vocabulary)] = (vocabulary, build_lexicon(vocabulary))
    return built[1]
