"""Knowledge corpora to passages: MedQuAD XML, JSONL (`{id, title, content}` or `{id, text, metadata}`,
the layout the MedRAG corpora — PubMed abstracts, StatPearls, textbooks — are distributed in) and folders
of Markdown or plain text, all cut by one `Chunker` (the embedder's tokenizer). Every passage id is
qualified by its corpus (`<corpus>:<id>`), so ids stay unique across corpora and stable across rebuilds;
a passage whose text repeats one kept earlier (in any corpus) is dropped. Each passage carries its
corpus's name, licence and citation, which reach every triplet that cites it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from medtrinity_core.knowledge.chunking import Chunker
from medtrinity_core.knowledge.medquad import PASSAGES, corpus_files, parse_medquad

if TYPE_CHECKING:
    from medtrinity_core.sources.schema import KnowledgeConfig

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
CORPUS_COLUMNS = {"corpus": pl.String, "license": pl.String, "citation": pl.String}


def _document_rows(chunker: Chunker, doc_id: str, title: str, text: str, url: str | None, relpath: str) -> list[dict]:
    return [
        {"passage_id": f"{doc_id}#{i}", "doc_id": doc_id, "focus": title, "question": title, "text": chunk, "url": url,
         "origin": None, "relpath": relpath, "cuis": "", "semantic_types": ""}
        for i, chunk in enumerate(chunker(text))
    ]


def _frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=PASSAGES, orient="row") if rows else pl.DataFrame(schema=PASSAGES)


def parse_jsonl(root: Path, chunker: Chunker, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """One document a line: `{id, title, content}` or `{id, text, metadata: {title, url, ...}}`."""
    rows = []
    for path in corpus_files(root, (".jsonl",), include):
        rel = path.relative_to(root).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{rel}:{n}: not a JSON object ({exc.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{rel}:{n}: not a JSON object")  # noqa: TRY004 - a bad corpus line, reported as its callers expect
            metadata = record.get("metadata") or {}
            text = record.get("content") or record.get("text") or ""
            doc_id = str(record.get("id") or f"{Path(rel).stem}-{n}")
            rows += _document_rows(chunker, doc_id, str(record.get("title") or metadata.get("title") or ""), text, metadata.get("url"), rel)
    return _frame(rows)


def parse_text(root: Path, chunker: Chunker, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """Each Markdown or text file a document: its first heading (else its name) is the title."""
    rows = []
    for path in corpus_files(root, TEXT_SUFFIXES, include):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        heading = re.search(r"^\s*#+\s*(.+?)\s*$", text, flags=re.MULTILINE)
        title = heading.group(1) if heading else path.stem.replace("_", " ").replace("-", " ")
        body = re.sub(r"^\s*#+\s*.*$", " ", text, flags=re.MULTILINE)  # headings are titles, not sentences
        rows += _document_rows(chunker, Path(rel).with_suffix("").as_posix(), title, body, None, rel)
    return _frame(rows)


LOADERS = {"medquad": parse_medquad, "jsonl": parse_jsonl, "text": parse_text}


def load_corpora(corpora: tuple[KnowledgeConfig, ...] | list[KnowledgeConfig], chunker: Chunker) -> pl.DataFrame:
    """All corpora's passages, ids qualified by corpus name, repeated texts dropped, each row with its
    corpus's name, licence and citation."""
    frames = []
    for corpus in corpora:
        passages = LOADERS[corpus.format](corpus.root, chunker, corpus.include)
        frames.append(passages.with_columns(
            pl.concat_str([pl.lit(f"{corpus.name}:"), pl.col("passage_id")]).alias("passage_id"),
            pl.lit(corpus.name).alias("corpus"), pl.lit(corpus.license).alias("license"), pl.lit(corpus.citation or "").alias("citation"),
        ))
    if not frames:
        return pl.DataFrame(schema={**PASSAGES, **CORPUS_COLUMNS})
    return pl.concat(frames).unique(subset=["text"], keep="first", maintain_order=True)
