"""The knowledge stage's checks of a sources file: its `vocabulary:` file reads as a vocabulary, and
each source's `terms:` map labels to terms (or synonyms) of it, replaced by their canonical terms."""

from __future__ import annotations

import yaml

from medtrinity_core.knowledge.vocabulary import load_vocabulary
from medtrinity_core.sources.schema import Locator, SourcesFile


def validate(sources_file: SourcesFile, locate: Locator) -> SourcesFile:
    """Raises `SourcesFileError` naming the line of the first problem; returns the file with each
    source's `terms` resolved to canonical vocabulary terms."""
    extra = str(sources_file.vocabulary) if sources_file.vocabulary else None
    try:
        vocabulary = load_vocabulary(extra)
    except (ValueError, yaml.YAMLError) as exc:
        raise locate.error(("vocabulary",), str(exc)) from None
    sources = []
    for i, src in enumerate(sources_file.sources):
        terms = []
        for label, target in src.terms:
            found = vocabulary.lookup(target)
            if found is None:
                raise locate.error(("sources", i, "terms", label), f"'{target}' is not a term of the vocabulary; add it to your `vocabulary:` file")
            terms.append((label, found.term))
        sources.append(src.model_copy(update={"terms": tuple(sorted(terms))}) if src.terms else src)
    return sources_file.model_copy(update={"sources": tuple(sources)})
