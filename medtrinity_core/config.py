"""Loading a sources file: its structure (`medtrinity_core.sources.schema`), then each stage's own checks.

The structural parse knows no stage; what needs a stage's knowledge (CT window presets, the vocabulary,
prompt templates) is checked by that stage's `config.validate(sources_file, locate)`, in STAGE_VALIDATORS'
order, each reporting `file:line: key: message` through the parse's `Locator` and returning the file
(updated where it resolves a value: canonical terms, prompt references). `resolved_document` writes a
loaded file back out as a complete document: every default filled in, paths absolute.
"""

from __future__ import annotations

import json
from pathlib import Path

from medtrinity_core.describe import config as describe_config
from medtrinity_core.imaging import config as imaging_config
from medtrinity_core.knowledge import config as knowledge_config
from medtrinity_core.sources.schema import (
    FAITHFULNESS_MOVED,
    ExpertSpec,
    GeneratorSpec,
    PrecomputedExpert,
    SourceConfig,
    SourcesFile,
    parse_sources,
)

STAGE_VALIDATORS = (imaging_config.validate, knowledge_config.validate, describe_config.validate)


def load_sources(path: str | Path) -> SourcesFile:
    """Read and validate a sources file; raises `SourcesFileError` on the first problem."""
    sources_file = parse_sources(path)
    locate = sources_file.locate
    for validate in STAGE_VALIDATORS:
        sources_file = validate(sources_file, locate)
    return sources_file


def _pairs(pairs) -> dict:
    return {k: v for k, v in pairs}


def _without_none(mapping: dict) -> dict:
    return {k: v for k, v in mapping.items() if v is not None}


def _expert(spec: ExpertSpec | PrecomputedExpert | None) -> dict | None:
    if spec is None:
        return None
    out = _without_none(spec.model_dump(mode="json", exclude={"network", "network_args", "labels"}))
    if spec.precomputed:
        if spec.format != "chexmask":
            out.pop("id_column", None)  # read for chexmask only, and refused elsewhere
        return {**out, "labels": _pairs(spec.labels)} if spec.labels else out
    out["labels"] = _pairs(spec.labels)
    if spec.network is not None:
        out["network"] = {"name": spec.network, "args": json.loads(spec.network_args)}
    return out


def _generator(spec: GeneratorSpec) -> dict:
    return _without_none(spec.model_dump(mode="json"))


def _storage(storage) -> dict | None:
    return None if storage is None else {"url": storage.url, "options": _pairs(storage.options)}


def _source(src: SourceConfig) -> dict:
    """One source as the file writes it: mappings for the label maps, lists for the tuples."""
    out = src.model_dump(mode="json", exclude={"vocabulary", "benchmark_hashes", "drop", *FAITHFULNESS_MOVED})
    out.update(
        masks=[_without_none({**m.model_dump(mode="json"), "label_words": _pairs(m.label_words), "label_map": _pairs(m.label_map)}) for m in src.masks],
        label_map=_pairs(src.label_map), label_windows=_pairs(src.label_windows), terms=_pairs(src.terms),
        expert=_expert(src.expert), expert_labels=_expert(src.expert_labels), generator=_generator(src.generator), storage=_storage(src.storage),
        boxes=_without_none(src.boxes.model_dump(mode="json")) if src.boxes else None,
        quality=json.loads(src.quality) if src.quality != "{}" else None,
    )
    return _without_none(out)


def resolved_document(sources_file: SourcesFile) -> dict:
    """The sources file as a complete document (`version: 1`, today's key layout, every default filled in,
    paths as absolute strings, nothing at a deprecated place): written as YAML and loaded with
    `load_sources`, it gives an equal `SourcesFile` (but for `path`). Unset optional values are left out."""
    hashes = {str(s.benchmark_hashes) for s in sources_file.sources if s.benchmark_hashes is not None}
    doc = {
        "version": 1,
        "defaults": sources_file.defaults,
        "vocabulary": str(sources_file.vocabulary) if sources_file.vocabulary else None,
        "generator": _generator(sources_file.generator),
        "retrieval": _without_none(sources_file.retrieval.model_dump(mode="json")),
        "retry": sources_file.retry.model_dump(mode="json"),
        "storage": _storage(sources_file.storage),
        "decontamination": {"hashes": hashes.pop()} if hashes else None,
        "knowledge": [_without_none(c.model_dump(mode="json")) for c in sources_file.corpora] or None,
        "sources": [_source(s) for s in sources_file.sources],
    }
    return _without_none(doc)
