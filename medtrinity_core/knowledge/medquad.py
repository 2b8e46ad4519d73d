"""MedQuAD XML (question-answer pairs from NIH sites) to passages of bounded length with stable ids."""

from __future__ import annotations

import fnmatch
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from medtrinity_core.knowledge.chunking import Chunker, clean

PASSAGES = {
    "passage_id": pl.String,
    "doc_id": pl.String,
    "focus": pl.String,
    "question": pl.String,
    "text": pl.String,
    "url": pl.String,
    "origin": pl.String,
    "relpath": pl.String,
    "cuis": pl.String,  # MedQuAD's UMLS CUIs of the document's focus, `; `-separated
    "semantic_types": pl.String,  # ...and their UMLS semantic types (T191, ...)
}


def corpus_files(root: Path, suffixes: tuple[str, ...], include: tuple[str, ...] = ()) -> list[Path]:
    """Files under `root` ending in one of `suffixes` (any case), those matching an `include` glob if given."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if include:
        files = [p for p in files if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in include)]
    return files


def parse_medquad(root: Path, chunker: Chunker, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """Passages of every answer. MedQuAD's question ids repeat across its collections (the same
    `0000019-1` in MedlinePlus, NINDS and NHLBI) and even across documents of one collection
    (`0000013_2.xml` and `0000013_2_1.xml`), so a passage id is the document's path under the corpus
    root, the pair's number and the chunk's: `1_CancerGov_QA/0000013_2_1/1#0`, unique and stable across
    rebuilds. A passage whose text repeats one already kept (one answer in two collections) is dropped."""
    rows = []
    for path in corpus_files(root, (".xml",), include):
        document = path.relative_to(root).with_suffix("").as_posix()
        doc = ET.parse(path).getroot()
        doc_id, focus = doc.get("id", path.stem), clean(doc.findtext("Focus", ""))
        cuis = "; ".join(clean(c.text) for c in doc.iter("CUI") if clean(c.text))
        semantic_types = "; ".join(clean(t.text) for t in doc.iter("SemanticType") if clean(t.text))
        for pair in doc.iter("QAPair"):
            question = pair.find("Question")
            answer = pair.findtext("Answer", "")
            if question is None or not clean(answer):
                continue  # MedQuAD removed some answers for copyright: no text, nothing to retrieve
            pair_number = pair.get("pid") or question.get("qid") or "0"
            for i, chunk in enumerate(chunker(answer)):
                rows.append(
                    {
                        "passage_id": f"{document}/{pair_number}#{i}",
                        "doc_id": doc_id,
                        "focus": focus,
                        "question": clean(question.text),
                        "text": chunk,
                        "url": doc.get("url"),
                        "origin": doc.get("source"),
                        "relpath": path.relative_to(root).as_posix(),
                        "cuis": cuis,
                        "semantic_types": semantic_types,
                    }
                )
    if not rows:
        return pl.DataFrame(schema=PASSAGES)
    return pl.DataFrame(rows, schema=PASSAGES, orient="row").unique(subset=["text"], keep="first", maintain_order=True)
