"""Versioned prompt templates for the model backends, and the parser of their answers.

A template is a text file with the placeholders `{coarse_caption}`, `{modality}`, `{organ}`, `{facts}`,
`{relations}` and `{passages}`; bundled ones are named by file stem (`describe-v1`), a user's by path
(relative to the sources file). The template's hash goes into every description's provenance. The answer
is read as the five facets plus knowledge, from a JSON object or from headed paragraphs ("Modality: ...");
a facet the answer lacks is recorded as missing, never filled in.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from medtrinity_core.modalities import display_name
from medtrinity_core.records import FACET_NAMES

if TYPE_CHECKING:  # loading a sources file checks its prompt: that needs no facts (nor the knowledge code they import)
    from medtrinity_core.describe.facts import Facts

BUNDLED = Path(__file__).parent
FACETS = FACET_NAMES
PLACEHOLDERS = ("coarse_caption", "modality", "organ", "facts", "relations", "passages")
HEADINGS = {
    "modality": r"modality",
    "organ_tissue": r"organ(?: and |/| & )?(?:tissue)?|organ_tissue",
    "roi_location": r"roi[ _]location|location|findings?",
    "colour_texture": r"colou?r(?: and |/| & )?(?:texture)?|colour_texture|color_texture|appearance",
    "relationships": r"(?:region )?relationships?",
    "knowledge": r"(?:related )?knowledge",
}


class PromptError(ValueError):
    """A prompt template that cannot be used."""


@dataclass(frozen=True)
class Prompt:
    ref: str  # bundled name or absolute path
    text: str

    @property
    def version(self) -> str:
        """Name and content hash: changes whenever the template does."""
        name = Path(self.ref).stem
        return f"{name}@{hashlib.sha256(self.text.encode()).hexdigest()[:12]}"

    def render(self, facts: Facts) -> str:
        return self.text.format(
            coarse_caption=facts.coarse_caption or "(none)", modality=display_name(facts.modality), organ=facts.body_region or "not stated by the source",
            facts=facts_text(facts), relations=relations_text(facts), passages=passages_text(facts),
        )


@lru_cache(maxsize=32)
def _read(path: str, version: tuple[int, int]) -> str:
    """Read once per content version (modification time and size): an edited file is read again."""
    return Path(path).read_text(encoding="utf-8")


def load_prompt(ref: str, base: Path | None = None) -> Prompt:
    """A bundled template by name, or a file by path (relative to `base`)."""
    bundled = BUNDLED / f"{ref}.txt"
    path = bundled if bundled.is_file() else (Path(base or ".") / ref).resolve()
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in BUNDLED.glob("*.txt")))
        raise PromptError(f"prompt {ref!r} is neither a bundled template ({names}) nor a file")
    stat = path.stat()
    text = _read(str(path), (stat.st_mtime_ns, stat.st_size))
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name}
    except ValueError as exc:
        raise PromptError(f"prompt {path.name}: {exc} (write a literal brace as {{{{ or }}}})") from None
    unknown = sorted(fields - set(PLACEHOLDERS))
    if unknown:
        raise PromptError(f"prompt {path.name}: unknown placeholder {{{unknown[0]}}} (known: {', '.join(PLACEHOLDERS)})")
    return Prompt(ref if bundled.is_file() else str(path), text)


def facts_text(facts: Facts) -> str:
    lines = []
    for f in facts.labels:
        kind = f"{f.category or 'unmapped'}" + (f", canonical term {f.term}" if f.term and f.term != f.label else "")
        if not f.count:
            lines.append(f"- {f.label} ({kind}): a label of the whole image, no region outlined")
            continue
        parts = [f"{f.count} region(s)", f"location: {f.within + ' (' + f.location + ')' if f.within else f.location}",
                 f"size: {f.size_class}, {f.area_pct}% of the image" + (f", about {f.area_mm2:.0f} mm²" if f.area_mm2 else "")]
        if f.shape:
            parts.append(f"shape: {f.shape}, {f.margin} margins")
        parts.append(f"brightness: {f.contrast} relative to the surrounding tissue; texture: {f.texture}" + (f"; colour: {f.colour}" if f.colour else ""))
        lines.append(f"- {f.label} ({kind}): " + "; ".join(parts))
    return "\n".join(lines) or "- no labelled region"


def relations_text(facts: Facts) -> str:
    return "\n".join(f"- the {r.subject} {r.verb} the {r.other} ({r.apart} between centres)" for r in facts.relations) or "- none measured"


def passages_text(facts: Facts) -> str:
    return "\n".join(f"- [{p.passage_id}] ({p.focus}; retrieved for {p.finding}) {p.text}" for p in facts.passages) or "- none found"


def parse_answer(text: str) -> tuple[dict, list[str]]:
    """(facets, missing facet names) from a JSON object in the answer, else from headed paragraphs."""
    facets: dict[str, str] = {}
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            data = json.loads(text[start:end + 1])
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            facets = {k: str(data[k]).strip() for k in FACETS if isinstance(data.get(k), (str, int, float)) and str(data[k]).strip()}
    if not facets:
        pattern = "|".join(f"(?P<{k}>{v})" for k, v in HEADINGS.items())
        marks = list(re.finditer(rf"^[#*\s]*(?:{pattern})[*\s]*:\s*", text, flags=re.IGNORECASE | re.MULTILINE))
        for m, nxt in zip(marks, marks[1:] + [None]):
            key = next(k for k, v in m.groupdict().items() if v)
            body = text[m.end():nxt.start() if nxt else len(text)].strip()
            if body and key not in facets:
                facets[key] = re.sub(r"\s+", " ", body)
    return facets, [k for k in FACETS if k not in facets]
