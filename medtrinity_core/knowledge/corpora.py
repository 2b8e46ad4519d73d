"""Knowledge corpora to passages: MedQuAD XML, JSONL (`{id, title, content}` or `{id, text, metadata}`,
the layout the MedRAG corpora — PubMed abstracts, StatPearls, textbooks — are distributed in) and folders
of Markdown or plain text. Every passage id is qualified by its corpus (`<corpus>:<id>`), so ids stay
unique across corpora and stable across rebuilds; a passage whose text repeats one kept earlier (in any
corpus) is dropped."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import polars as pl

from medtrinity_core.knowledge.medquad import PASSAGES, chunk_words, parse_medquad
from medtrinity_core.sources.schema import KnowledgeConfig

TEXT_SUFFIXES = (".md", ".markdown", ".txt")


def _files(root: Path, suffixes: tuple[str, ...], include: tuple[str, ...]) -> list[Path]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(suffixes))
    if include:
        files = [p for p in files if any(fnmatch.fnmatch(p.relative_to(root).as_posix(), pat) for pat in include)]
    return files


def _document_rows(doc_id: str, title: str, text: str, url: str | None, relpath: str) -> list[dict]:
    return [
        {"passage_id": f"{doc_id}#{i}", "doc_id": doc_id, "focus": title, "question": title, "text": chunk, "url": url, "origin": None, "relpath": relpath}
        for i, chunk in enumerate(chunk_words(text))
    ]


def parse_jsonl(root: Path, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """One document a line: `{id, title, content}` or `{id, text, metadata: {title, url, ...}}`."""
    rows = []
    for path in _files(root, (".jsonl",), include):
        rel = path.relative_to(root).as_posix()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{rel}:{n}: not a JSON object ({exc.msg})") from None
            metadata = record.get("metadata") or {}
            text = record.get("content") or record.get("text") or ""
            doc_id = str(record.get("id") or f"{Path(rel).stem}-{n}")
            rows += _document_rows(doc_id, str(record.get("title") or metadata.get("title") or ""), text, metadata.get("url"), rel)
    return pl.DataFrame(rows, schema=PASSAGES, orient="row") if rows else pl.DataFrame(schema=PASSAGES)


def parse_text(root: Path, include: tuple[str, ...] = ()) -> pl.DataFrame:
    """Each Markdown or text file a document: its first heading (else its name) is the title."""
    rows = []
    for path in _files(root, TEXT_SUFFIXES, include):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        heading = re.search(r"^\s*#+\s*(.+?)\s*$", text, flags=re.MULTILINE)
        title = heading.group(1) if heading else path.stem.replace("_", " ").replace("-", " ")
        body = re.sub(r"^\s*#+\s*.*$", " ", text, flags=re.MULTILINE)  # headings are titles, not sentences
        rows += _document_rows(Path(rel).with_suffix("").as_posix(), title, body, None, rel)
    return pl.DataFrame(rows, schema=PASSAGES, orient="row") if rows else pl.DataFrame(schema=PASSAGES)


LOADERS = {"medquad": parse_medquad, "jsonl": parse_jsonl, "text": parse_text}


def load_corpora(corpora: tuple[KnowledgeConfig, ...] | list[KnowledgeConfig]) -> pl.DataFrame:
    """All corpora's passages, ids qualified by corpus name, repeated texts dropped, with a `corpus` column."""
    frames = []
    for corpus in corpora:
        passages = LOADERS[corpus.format](corpus.root, corpus.include)
        frames.append(passages.with_columns(pl.concat_str([pl.lit(f"{corpus.name}:"), pl.col("passage_id")]).alias("passage_id"), pl.lit(corpus.name).alias("corpus")))
    if not frames:
        return pl.DataFrame(schema={**PASSAGES, "corpus": pl.String})
    return pl.concat(frames).unique(subset=["text"], keep="first", maintain_order=True)
