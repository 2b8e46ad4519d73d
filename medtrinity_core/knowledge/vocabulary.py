"""The canonical label vocabulary: source labels ("pleural_effusion", "PTX", "liver+tumor") to one
canonical term with synonyms, a category (finding | anatomy), an organ system, the appearance a finding
is expected to have per modality, and a SNOMED CT code taken from `pydicom.sr.codedict` (the only
source of codes on this machine). A label that matches no entry passes through unmapped, flagged."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

BUNDLED = Path(__file__).with_name("vocabulary.yaml")
CATEGORIES = ("finding", "anatomy")


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
    snomed: tuple[str, str] | None = None  # (code value, meaning) from pydicom's codedict

    def words(self) -> list[str]:
        """The canonical term first, then its written-out synonyms (abbreviations of three letters or less
        left out: they add nothing to a search)."""
        return [self.term, *(s for s in self.synonyms if len(s) > 3 and normal_form(s) != normal_form(self.term))]


@dataclass
class Vocabulary:
    terms: list[Term] = field(default_factory=list)
    index: dict[str, Term] = field(default_factory=dict)

    def lookup(self, label: str) -> Term | None:
        return self.index.get(normal_form(label))


def _snomed(name: str | None, where: str) -> tuple[str, str] | None:
    if not name:
        return None
    from pydicom.sr.codedict import codes

    try:
        code = getattr(codes.SCT, name)
    except AttributeError:
        raise ValueError(f"{where}: {name} is not a SNOMED CT concept in pydicom.sr.codedict") from None
    return str(code.value), str(code.meaning)


def parse_vocabulary(entries: list, where: str) -> list[Term]:
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
            snomed=_snomed(entry.get("snomed"), here),
        ))
    return terms


def build_vocabulary(terms: list[Term]) -> Vocabulary:
    """Later entries (a user's own file after the bundled one) win for a name both define."""
    vocabulary = Vocabulary(terms=list(terms))
    for term in terms:
        for name in (term.term, *term.synonyms):
            vocabulary.index[normal_form(name)] = term
    return vocabulary


@lru_cache(maxsize=8)
def load_vocabulary(extra: str | None = None) -> Vocabulary:
    """The bundled vocabulary, extended (and overridden name by name) by a user's YAML file."""
    terms = parse_vocabulary(yaml.safe_load(BUNDLED.read_text()), BUNDLED.name)
    if extra:
        terms += parse_vocabulary(yaml.safe_load(Path(extra).read_text()), Path(extra).name)
    return build_vocabulary(terms)
