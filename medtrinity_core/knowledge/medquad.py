"""MedQuAD XML (question-answer pairs from NIH sites) to passages of bounded length with stable ids."""

from __future__ import annotations

import fnmatch
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

MAX_WORDS = 120
PASSAGES = {
    "passage_id": pl.String,
    "doc_id": pl.String,
    "focus": pl.String,
    "question": pl.String,
    "text": pl.String,
    "url": pl.String,
    "origin": pl.String,
    "relpath": pl.String,
}


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def chunk_words(text: str, max_words: int = MAX_WORDS) -> list[str]:
    """Sentence-aligned chunks of at most `max_words` words (a longer sentence stands alone)."""
    sentences = re.split(r"(?<=[.!?])\s+", _clean(text))
    chunks, current = [], []
    for sentence in sentences:
        words = sentence.split()
        if current and len(current) + len(words) > max_words:
            chunks.append(" ".join(current))
            current = []
        current.extend(words)
    if current:
        chunks.append(" ".join(current))
    return chunks


def corpus_files(root: Path, include: tuple[str, ...] = ()) -> list[Path]:
    files = sorted(p for p in root.rglob("*.xml") if p.is_file())
    if include:
        files = [p for p in files if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in include)]
    return files


def parse_medquad(root: Path, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """Passages of every answer. MedQuAD's question ids repeat across its collections (the same
    `0000019-1` in MedlinePlus, NINDS and NHLBI) and even across documents of one collection
    (`0000013_2.xml` and `0000013_2_1.xml`), so a passage id is the document's path under the corpus
    root, the pair's number and the chunk's: `1_CancerGov_QA/0000013_2_1/1#0`, unique and stable across
    rebuilds. A passage whose text repeats one already kept (one answer in two collections) is dropped."""
    rows = []
    for path in corpus_files(root, include):
        document = path.relative_to(root).with_suffix("").as_posix()
        doc = ET.parse(path).getroot()
        doc_id, focus = doc.get("id", path.stem), _clean(doc.findtext("Focus", ""))
        for pair in doc.iter("QAPair"):
            question = pair.find("Question")
            answer = _clean(pair.findtext("Answer", ""))
            if question is None or not answer:
                continue  # MedQuAD removed some answers for copyright: no text, nothing to retrieve
            pair_number = pair.get("pid") or question.get("qid") or "0"
            for i, chunk in enumerate(chunk_words(answer)):
                rows.append(
                    {
                        "passage_id": f"{document}/{pair_number}#{i}",
                        "doc_id": doc_id,
                        "focus": focus,
                        "question": _clean(question.text),
                        "text": chunk,
                        "url": doc.get("url"),
                        "origin": doc.get("source"),
                        "relpath": path.relative_to(root).as_posix(),
                    }
                )
    if not rows:
        return pl.DataFrame(schema=PASSAGES)
    return pl.DataFrame(rows, schema=PASSAGES, orient="row").unique(subset=["text"], keep="first", maintain_order=True)
