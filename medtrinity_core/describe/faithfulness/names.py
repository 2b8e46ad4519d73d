"""How a text may name a label beyond its exact words: the label's initials ("WBC" for white blood cell,
"AFB" for acid-fast bacilli) and its words in another order and form within a short stretch of one clause
("mediastinal widening" for widened mediastinum, "the heart looks enlarged" for enlarged heart,
"parasitised RBCs" for parasitized red blood cells, "blasts" for blast cells).

Words match by stem: British and American spellings alike, "-ise" as "-ize", and a shared beginning of
at least five letters that leaves at most three letters of the shorter word and a derivational ending
on each ("mediastinum", "mediastinal"; "enlarged", "enlargement"; not "adenoma", "adenocarcinoma"). Short words match only whole or as plurals ("liver" is not
"lives")."""

from __future__ import annotations

import re
from functools import lru_cache

from medtrinity_core.describe.faithfulness.lexicon import SPELLINGS
from medtrinity_core.knowledge.vocabulary import normal_form

FILLER = frozenset({"of", "the", "and", "a", "an", "in", "on", "with", "to", "or"})
GENERIC_WORDS = frozenset({"cell", "cells", "region", "regions", "area", "areas", "structure", "structures", "finding", "findings", "tissue"})
WORD = re.compile(r"[A-Za-z][A-Za-z']*")
CLAUSE_BREAK = re.compile(r"[.;:!?()\n]|\b(?:but|whereas|while|although|however)\b", re.IGNORECASE)
SLACK = 3  # words a loose naming may hold beyond its own ("the heart looks enlarged": one)


def initialism(name: str) -> str | None:
    """"white blood cell" -> "WBC", "acid-fast bacilli" -> "AFB"; None for one word or under two letters."""
    words = [w for w in re.split(r"[\s\-_/]+", name.strip()) if w and w.lower() not in FILLER]
    if len(words) < 2 or not all(w[0].isalpha() for w in words):
        return None
    return "".join(w[0] for w in words).upper()


@lru_cache(maxsize=65536)
def stem(word: str) -> str:
    w = word.lower().replace("’", "'").removesuffix("'s")
    for british, american in SPELLINGS:
        w = w.replace(british, american)
    w = re.sub(r"is(e|ed|es|ing|ation|ations)$", r"iz\1", w)
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 4 and w.endswith("es") and w[-3] in "sxhz":
        return w[:-2]
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


SUFFIXES = frozenset({"", "s", "es", "e", "d", "ed", "ing", "al", "ar", "ic", "atic", "otic", "ment", "ments", "ion", "ions", "ation", "ations", "tion",
                      "cation", "fication", "fied", "ity", "ty", "ous", "is", "um", "us", "a", "i", "ae", "ia", "y", "ies", "ize", "ized", "izing", "ly",
                      "ative", "ened", "ening", "en", "sis", "ses", "tic", "tically", "tous", "ose", "ism", "c"})


NOUN_ENDINGS = frozenset({"", "s", "es", "e", "d", "ed", "ion", "ions", "ation", "ations", "tion", "is", "ses", "sis", "um", "us", "a", "i", "ae", "ia", "y", "ies"})
GENERIC_NOUNS = frozenset({"change", "changes", "disease", "process", "ca", "carcinoma", "deposit", "deposits", "lesion", "lesions", "focus", "foci", "involvement",
                           "infiltrate", "infiltration", "pattern", "area", "areas", "region", "regions", "spread", "tissue", "component", "features"})


def same_word(a: str, b: str, endings: frozenset = SUFFIXES) -> bool:
    """One word in two forms: a shared beginning of five letters or more, each word going on by at most
    a derivational ending ("mediastin-um", "mediastin-al"; not "adeno-ma", "adeno-carcinoma")."""
    if a == b:
        return True
    if a[:5] != b[:5] or len(a) < 5 or len(b) < 5:
        return False
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n >= 5 and n >= min(len(a), len(b)) - 3 and a[n:] in endings and b[n:] in endings


def content(name: str) -> tuple[str, ...]:
    """The stems a loose naming must show: the name's words less fillers and generic words ("cell")."""
    words = [w for w in WORD.findall(normal_form(name).replace("-", " ")) if w not in FILLER]
    kept = [w for w in words if w not in GENERIC_WORDS]
    return tuple(dict.fromkeys(stem(w) for w in kept))


def loose_find(text: str, names: dict[str, int]) -> list[tuple[int, int, int]]:
    """(start, end, label) where every content word of a name appears, in any order and form, within
    its own length plus SLACK words of one clause; a name of one content word matches its noun forms only
    ("exudation" for exudates, not "nuclear" for nuclei: "no nuclear atypia" denies no nuclei)."""
    tokens = [(m.start(), m.end(), stem(m.group(0))) for m in WORD.finditer(text)]
    if not tokens:
        return []
    breaks = [m.start() for m in CLAUSE_BREAK.finditer(text)]
    clause, k = [], 0
    for a, _, _ in tokens:
        while k < len(breaks) and breaks[k] < a:
            k += 1
        clause.append(k)
    stems = {s for _, _, s in tokens}
    starts = {s[:5] for s in stems}
    hits = []
    for name, label in names.items():
        want = content(name)
        if not want or (len(want) == 1 and len(want[0]) < 5) or not all(w[:5] in starts for w in want):
            continue  # a word the text cannot have in any form (same_word needs the first five letters)
        if len(want) > 1:
            alike = {w: {s for s in stems if same_word(s, w)} for w in want}
        else:  # one word: its noun forms, or an adjective before a generic noun ("metastatic ca", "emphysematous change"; not "nuclear atypia")
            generic = {s for i, (_, _, s) in enumerate(tokens[:-1]) if tokens[i + 1][2] in GENERIC_NOUNS or tokens[i + 1][2].rstrip("s") in GENERIC_NOUNS}
            alike = {w: {s for s in stems if same_word(s, w, NOUN_ENDINGS) or (s in generic and same_word(s, w))} for w in want}  # each wanted word's forms in this text
        if not all(alike.values()):
            continue
        width = len(want) + SLACK if len(want) > 1 else 1
        for i, (_, _, s) in enumerate(tokens):
            if not any(s in forms for forms in alike.values()):
                continue
            found, last = set(), i
            for j in range(i, min(len(tokens), i + width)):
                if clause[j] != clause[i]:
                    break
                w = next((w for w in want if w not in found and tokens[j][2] in alike[w]), None)
                if w is not None:
                    found.add(w)
                    last = j
                if len(found) == len(want):
                    break
            if len(found) == len(want):
                hits.append((tokens[i][0], tokens[last][1], label))
    return hits
