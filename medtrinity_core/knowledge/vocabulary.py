"""The canonical label vocabulary: source labels ("pleural_effusion", "PTX", "liver+tumor") to one
canonical term with synonyms, a category (finding | anatomy), an organ system, the appearance a finding
is expected to have per modality, and codes only from sources on this machine: SNOMED CT from
`pydicom.sr.codedict`, UMLS CUIs as MedQuAD annotates its documents' focus. A source may map its labels
explicitly (`terms:`) and say which are findings (`findings:`); a label that matches nothing passes
through unmapped, flagged — never guessed."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import yaml

BUNDLED = Path(__file__).with_name("vocabulary.yaml")
CATEGORIES = ("finding", "anatomy", "normal")  # normal: a class saying nothing abnormal is shown (never queried)
SIDES = {"left", "right", "lt", "rt", "l", "r", "bilateral"}
LEVEL = re.compile(r"^[ctls]?\d{1,2}$")  # a rib's number, a vertebral level (C1-C7, T1-T12, L1-L5, S1)


@lru_cache(maxsize=65536)
def normal_form(label: str) -> str:
    """Lower case; `_`, `+`, `-`, `/` and runs of spaces as one space: how labels are compared."""
    return re.sub(r"\s+", " ", re.sub(r"[_+\-/]", " ", label.lower())).strip()


@dataclass(frozen=True)
class Term:
    term: str
    category: str
    system: str
    synonyms: tuple[str, ...] = ()
    appearance: tuple[tuple[str, str], ...] = ()  # modality -> expected appearance
    snomed_name: str | None = None  # a SNOMED CT concept of pydicom's codedict, by its keyword
    umls: tuple[str, ...] = ()  # UMLS CUIs, as MedQuAD's FocusAnnotations give them
    organ: str | None = None  # a finding: the organ (an anatomy term) it lies in
    broader: str | None = None  # a finding: the term it is a kind of (glioma: brain tumor)
    signs: tuple[str, ...] = ()  # a diagnosis: the findings that show it (diabetic retinopathy: microaneurysm, ...)
    places: tuple[tuple[str, str | None], ...] = ()  # an organ: words naming it or its parts, with the side they imply
    denied_by: tuple[str, ...] = ()  # a finding: phrases that say it is not there ("costophrenic angles are sharp": no effusion)

    @property
    def snomed(self) -> tuple[str, str] | None:
        """(code value, meaning) from pydicom's codedict, looked up when asked (its 0.2-0.4 s import is
        kept out of loading the Definitions; the bundled names are checked by a test, a user's at load)."""
        return _snomed(self.snomed_name, self.term)

    def words(self) -> list[str]:
        """The canonical term first, then its written-out synonyms (abbreviations of three letters or less
        left out: they add nothing to a search)."""
        return [self.term, *(s for s in self.synonyms if len(s) > 3 and normal_form(s) != normal_form(self.term))]


@dataclass
class Vocabulary:
    terms: list[Term] = field(default_factory=list)
    index: dict[str, Term] = field(default_factory=dict)
    reading: dict = field(default_factory=dict)  # how clinical text names modalities, regions, sizes, ... (the file's `reading:`)

    def lookup(self, label: str) -> Term | None:
        """By normal form; failing that, without its side or level (`kidney_left` is the kidney, on the
        left; `rib_left_9` a rib; `vertebrae_T9` a vertebra)."""
        key = normal_form(label)
        found = self.index.get(key)
        if found is None:
            bare = " ".join(w for w in key.split() if w not in SIDES and not LEVEL.match(w))
            found = self.index.get(bare) if bare and bare != key else None
        return found


@cache
def _snomed(name: str | None, where: str) -> tuple[str, str] | None:
    if not name:
        return None
    from pydicom.sr.codedict import codes

    try:
        code = getattr(codes.SCT, name)
    except AttributeError:
        raise ValueError(f"{where}: {name} is not a SNOMED CT concept in pydicom.sr.codedict") from None
    return str(code.value), str(code.meaning)


def _checked(name: str | None, where: str, check: bool) -> str | None:
    if name and check:
        _snomed(str(name), where)  # a user's file: an unknown concept is an error naming the entry
    return str(name) if name else None


def _cuis(value, where: str) -> tuple[str, ...]:
    cuis = tuple(str(v) for v in value or ())
    bad = [c for c in cuis if not re.fullmatch(r"C\d{7}", c)]
    if bad:
        raise ValueError(f"{where}: {bad[0]} is not a UMLS CUI (C and seven digits)")
    return cuis


def _places(value, where: str) -> tuple[tuple[str, str | None], ...]:
    out = []
    for item in value or ():
        pairs = item.items() if isinstance(item, dict) else [(item, None)]
        for phrase, side in pairs:
            if not str(phrase).strip(" -"):
                raise ValueError(f"{where}: places: {phrase!r} is no word")
            if side not in (None, "left", "right", "midline"):
                raise ValueError(f"{where}: places: {phrase}: the side must be left, right or midline, not {side}")
            out.append((str(phrase), side))
    return tuple(out)


def parse_vocabulary(entries: list, where: str, check_codes: bool = True) -> list[Term]:
    terms = []
    for n, entry in enumerate(entries or []):
        here = f"{where}[{n}]"
        if not isinstance(entry, dict) or not entry.get("term"):
            raise ValueError(f"{here}: each entry needs a `term`")
        category = entry.get("category", "finding")
        if category not in CATEGORIES:
            raise ValueError(f"{here}: category must be one of {', '.join(CATEGORIES)}")
        terms.append(Term(
            term=str(entry["term"]), category=category, system=str(entry.get("system", "")),
            synonyms=tuple(str(s) for s in entry.get("synonyms") or ()),
            appearance=tuple(sorted((str(k), str(v)) for k, v in (entry.get("appearance") or {}).items())),
            snomed_name=_checked(entry.get("snomed"), here, check_codes),
            umls=_cuis(entry.get("umls"), here),
            organ=str(entry["organ"]) if entry.get("organ") else None, broader=str(entry["broader"]) if entry.get("broader") else None,
            places=_places(entry.get("places"), here), signs=tuple(str(x) for x in entry.get("signs") or ()),
            denied_by=tuple(str(x) for x in entry.get("denied_by") or ()),
        ))
    return terms


READING_LISTS = ("modalities", "heads", "weak_heads")  # lists a user's `reading:` appends to; the other parts are mappings merged key by key


def split_file(data, where: str) -> tuple[list, dict]:
    """(terms, reading) of a vocabulary file: a list of terms, or a mapping with `terms:` and `reading:`."""
    if isinstance(data, dict):
        unknown = set(data) - {"terms", "reading"}
        if unknown:
            raise ValueError(f"{where}: unknown key {sorted(unknown)[0]!r} (a vocabulary file has `terms:` and `reading:`)")
        reading = data.get("reading") or {}
        check_reading(reading, where)
        return data.get("terms") or [], reading
    return data or [], {}


READING_SHAPES = {"modalities": "entries", "heads": "words", "weak_heads": "words", "parts": "words", "regions": "regions",
                  "sizes": ("small", "medium", "large"), "appearance": ("brighter", "darker", "similar"), "colours": None}


def _words(value, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(w, str) and w.strip(" -") for w in value):
        raise ValueError(f"{where}: must be a list of words (non-empty strings)")


def check_reading(reading, where: str) -> None:
    """A vocabulary file's `reading:` part has the bundled file's shape; a mistake is a ValueError naming
    the key, not a failure when text is first scored."""
    if not isinstance(reading, dict):
        raise ValueError(f"{where}: reading: must be a mapping")
    for key, value in reading.items():
        here = f"{where}: reading.{key}"
        if key not in READING_SHAPES:
            raise ValueError(f"{here}: unknown key (known: {', '.join(READING_SHAPES)})")
        shape = READING_SHAPES[key]
        if shape == "words":
            _words(value, here)
        elif shape == "entries":
            if not isinstance(value, list):
                raise ValueError(f"{here}: must be a list of {{modality, words}} entries")
            for n, entry in enumerate(value):
                if not isinstance(entry, dict) or not isinstance(entry.get("modality"), str):
                    raise ValueError(f"{here}[{n}]: needs a `modality` and its `words`")
                _words(entry.get("words"), f"{here}[{n}].words")
                for opt in ("also", "beside"):
                    if opt in entry:
                        _words(entry[opt], f"{here}[{n}].{opt}")
                if "strict" in entry and not isinstance(entry["strict"], bool):
                    raise ValueError(f"{here}[{n}].strict: must be true or false")
        elif shape == "regions":
            if not isinstance(value, dict):
                raise ValueError(f"{here}: must be a mapping of region names")
            for name, spec in value.items():
                if not isinstance(spec, dict):
                    raise ValueError(f"{here}.{name}: must be a mapping with `words`, `holds` (and `core`)")
                for part in ("words", "holds", "core"):
                    if part in spec:
                        _words(spec[part], f"{here}.{name}.{part}")
        else:
            if not isinstance(value, dict):
                raise ValueError(f"{here}: must be a mapping of lists of words")
            for sub, words in value.items():
                if shape and sub not in shape:
                    raise ValueError(f"{here}.{sub}: unknown key (known: {', '.join(shape)})")
                _words(words, f"{here}.{sub}")


def merge_reading(base: dict, extra: dict) -> dict:
    out = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in base.items()}
    for key, value in extra.items():
        if key in READING_LISTS:
            out[key] = [*out.get(key, []), *(value or [])]
        else:
            out[key] = {**out.get(key, {}), **(value or {})}
    return out


def build_vocabulary(terms: list[Term], reading: dict | None = None) -> Vocabulary:
    """Later entries (a user's own file after the bundled one) win for a name both define."""
    vocabulary = Vocabulary(terms=list(terms), reading=reading or {})
    for term in terms:
        for name in (term.term, *term.synonyms):
            vocabulary.index[normal_form(name)] = term
    return vocabulary


def load_vocabulary(extra: str | None = None) -> Vocabulary:
    """The bundled vocabulary, extended (and overridden name by name) by a user's YAML file; read again
    when that file changes (a long-running code server sees an edit)."""
    if not extra:
        return _load_vocabulary(None, None)
    stat = Path(extra).stat()
    return _load_vocabulary(extra, (stat.st_mtime_ns, stat.st_size))


def _read_user_file(path: Path):
    """A user's vocabulary file, read as strictly as the sources file that names it (encodings, YAML 1.2
    scalars, core tags, bounded aliases); a refusal is a ValueError naming its line."""
    from medtrinity_core.sources.yaml_lines import (
        YamlRefused,
        decode_sources_text,
        load_with_lines,
    )

    try:
        return load_with_lines(decode_sources_text(str(path), path.read_bytes()))
    except YamlRefused as exc:
        raise ValueError(f"{path.name}:{exc.line}: {exc}") from None


@lru_cache(maxsize=8)
def _load_vocabulary(extra: str | None, version: tuple[int, int] | None) -> Vocabulary:
    entries, reading = split_file(yaml.safe_load(BUNDLED.read_text()), BUNDLED.name)
    terms = parse_vocabulary(entries, BUNDLED.name, check_codes=False)  # checked by a test
    if extra:
        entries, mine = split_file(_read_user_file(Path(extra)), Path(extra).name)
        terms += parse_vocabulary(entries, Path(extra).name)
        reading = merge_reading(reading, mine)
    return build_vocabulary(terms, reading)


@dataclass(frozen=True)
class SourceVocabulary:
    """The vocabulary as one source sees it: its explicit `terms:` first, its `findings:` deciding which
    labels are findings (without the key, the vocabulary's category; unmapped labels count as findings,
    since nothing says they are anatomy)."""

    vocabulary: Vocabulary
    terms: tuple[tuple[str, str], ...] = ()  # normal form of a label -> canonical term name
    findings: frozenset[str] | None = None  # normal forms

    def term(self, label: str) -> Term | None:
        explicit = dict(self.terms).get(normal_form(label))
        return self.vocabulary.lookup(explicit) if explicit else self.vocabulary.lookup(label)

    def category(self, label: str) -> str | None:
        """finding | anatomy | None (unknown): a label the source lists in `findings:` is a finding; one
        it leaves out is not, and keeps the vocabulary's category only when that is anatomy."""
        found = self.term(label)
        category = found.category if found else None
        if self.findings is None:
            return category
        return "finding" if normal_form(label) in self.findings else (category if category != "finding" else None)

    def is_finding(self, label: str) -> bool:
        """Queried for knowledge: findings, and, where the source lists none, unmapped labels too."""
        if self.findings is not None:
            return normal_form(label) in self.findings
        return self.category(label) in ("finding", None)

    def unmapped(self, labels) -> list[str]:
        """Labels neither the source nor the vocabulary maps: passed through as written, listed for the user."""
        return sorted({label for label in labels if label and self.term(label) is None})


@lru_cache(maxsize=64)
def _source_vocabulary(extra: str | None, terms: tuple[tuple[str, str], ...], findings: tuple[str, ...] | None) -> SourceVocabulary:
    return SourceVocabulary(
        load_vocabulary(extra),
        tuple((normal_form(label), term) for label, term in terms),
        None if findings is None else frozenset(normal_form(f) for f in findings),
    )


def source_vocabulary(source) -> SourceVocabulary:
    """For a `SourceConfig` (its `vocabulary`, `terms` and `findings`)."""
    return _source_vocabulary(str(source.vocabulary) if source.vocabulary else None, source.terms, source.findings)
