"""MedQuAD parsing and chunking, offline embeddings, Chroma storage and retrieval."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from medtrinity_core.knowledge.embed import LocalEmbedder
from medtrinity_core.knowledge.medquad import chunk_words, parse_medquad
from medtrinity_core.knowledge.retrieve import coarse_caption, query_text, retrieve_context
from medtrinity_core.knowledge.store import build, fetch_passages, open_collection
from medtrinity_core.sources.schema import load_sources

from .conftest import EXAMPLES, KNOWLEDGE_INCLUDE

MEDQUAD = EXAMPLES / "knowledge" / "medquad"


def test_chunks_are_sentence_aligned_and_bounded():
    text = " ".join(f"Sentence number {i} has six words." for i in range(50))
    chunks = chunk_words(text, max_words=20)
    assert all(len(c.split()) <= 20 for c in chunks)
    assert all(c.endswith(".") for c in chunks) and " ".join(chunks) == text


def test_medquad_passages_have_stable_ids_and_focus():
    passages = parse_medquad(MEDQUAD, ("*/0000218.xml",))
    assert set(passages["focus"].to_list()) == {"Colonic Polyps"}
    assert passages["passage_id"].n_unique() == passages.height
    assert passages["passage_id"][0] == "4_MPlus_Health_Topics_QA/0000218/1#0"  # the document's path, pair and chunk
    again = parse_medquad(MEDQUAD, ("*/0000218.xml",))
    assert again.equals(passages)


def test_the_full_medquad_sample_has_unique_passage_ids_and_no_repeated_text(samples):
    passages = parse_medquad(samples / "knowledge" / "medquad")
    assert passages.height > 10_000
    assert passages["passage_id"].n_unique() == passages.height  # question ids repeat across collections
    assert passages["text"].n_unique() == passages.height
    same_qid = passages.filter(passages["passage_id"].str.contains("/0000019/1#0", literal=True))["passage_id"].to_list()
    assert len(same_qid) >= 2 and len({p.split("/")[0] for p in same_qid}) == len(same_qid)  # one per collection


@pytest.fixture(scope="module")
def kb(tmp_path_factory):
    passages = parse_medquad(MEDQUAD, tuple(KNOWLEDGE_INCLUDE))
    path = tmp_path_factory.mktemp("chroma")
    embedder = LocalEmbedder()
    version, rebuilt = build(passages, path, embedder)
    return passages, path, embedder, version, rebuilt


def test_embedder_is_local_and_normalized(kb):
    _, _, embedder, _, _ = kb
    vectors = embedder(["colon polyp", "a polyp in the colon", "melanoma of the skin"])
    assert len(vectors[0]) == 384 and np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(np.dot(vectors[0], vectors[1])) > float(np.dot(vectors[0], vectors[2]))
    assert embedder.model_id == "all-MiniLM-L6-v2"


def test_build_is_versioned_and_idempotent(kb):
    passages, path, embedder, version, rebuilt = kb
    assert rebuilt and len(version) == 16
    assert build(passages, path, embedder) == (version, False)
    col = open_collection(path, embedder)
    assert col.count() == passages.height and col.metadata["kb_version"] == version


def test_retrieval_finds_the_disease_of_the_image(kb):
    passages, path, embedder, version, _ = kb
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    image = {"image_id": "img-1", "masks": [{"label": "polyp"}], "labels": ["polyp"], "slice_axis": None}
    assert query_text(src, image) == "colonic polyp, polyp, colon polyp, colorectal polyp, adenomatous polyp colon endoscopy"  # through the vocabulary
    assert coarse_caption(src, image) == "endoscopy image of the colon with annotated polyp."
    col = open_collection(path, embedder)
    ctx = retrieve_context(src, [image], col, version)
    row = ctx.row(0, named=True)
    assert len(row["passage_ids"]) == 3 and row["scores"] == sorted(row["scores"], reverse=True)
    focus = dict(zip(passages["passage_id"].to_list(), passages["focus"].to_list()))
    assert focus[row["passage_ids"][0]] in {"Colonic Polyps", "Colon Cancer"}
    got = fetch_passages(col, row["passage_ids"])
    assert set(got) == set(row["passage_ids"]) and all(v["text"] for v in got.values())


def test_retrieval_without_a_knowledge_base_gives_empty_context():
    src = load_sources(EXAMPLES / "sources.yaml").source("busi")
    image = {"image_id": "img-1", "masks": [], "labels": ["benign"], "slice_axis": None}
    ctx = retrieve_context(src, [image], None, "")
    assert ctx["passage_ids"].to_list() == [[]]
    assert ctx["coarse_caption"][0] == "ultrasound image of the breast, labelled benign by the source."
    assert isinstance(ctx, pl.DataFrame)


def test_passages_under_the_score_floor_are_not_cited(kb):
    from dataclasses import replace

    passages, path, embedder, version, _ = kb
    sources = load_sources(EXAMPLES / "sources.yaml")
    nuclei = {"image_id": "img-1", "masks": [{"label": "nucleus"}], "labels": ["nucleus"], "slice_axis": None}
    polyp = {"image_id": "img-2", "masks": [{"label": "polyp"}], "labels": ["polyp"], "slice_axis": None}
    col = open_collection(path, embedder)
    microscopy, endoscopy = sources.source("dsb2018"), sources.source("kvasir-seg")
    loose = retrieve_context(replace(microscopy, min_score=0.0), [nuclei], col, version)
    assert len(loose["passage_ids"][0]) == 3  # without a floor, something is always cited
    assert retrieve_context(replace(microscopy, min_score=0.5), [nuclei], col, version)["passage_ids"].to_list() == [[]]
    scores = retrieve_context(replace(endoscopy, min_score=0.5), [polyp], col, version)["scores"].to_list()[0]
    assert scores and min(scores) >= 0.5  # passages about polyps answer a polyp


def test_knowledge_query_prints_the_top_passages_as_json(kb, tmp_path):
    import json
    import subprocess
    import sys

    _, _, embedder, _, _ = kb
    from medtrinity_core.knowledge.corpora import load_corpora
    from medtrinity_core.sources.schema import KnowledgeConfig
    from medtrinity_core.storage import Workdir

    passages = load_corpora([KnowledgeConfig("medquad-tiny", "medquad", MEDQUAD, "CC-BY-4.0", include=tuple(KNOWLEDGE_INCLUDE))])
    build(passages, Workdir.at(tmp_path).chroma, embedder)
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "polyp", "--modality", "endoscopy",
                          "--body-region", "colon", "--k", "2", "--json", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 2 and set(hits[0]) == {"passage_id", "corpus", "focus", "title", "score", "text"}
    assert hits[0]["focus"] in {"Colonic Polyps", "Colon Cancer"} and hits[0]["corpus"] == "medquad-tiny" and hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["title"].endswith("?") and hits[0]["passage_id"] in set(passages["passage_id"])
    missing = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "x", "--workdir", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no knowledge base under")


def test_the_vocabulary_maps_labels_as_sources_write_them_and_passes_the_rest_through(tmp_path):
    from pydicom.sr.codedict import codes

    from medtrinity_core.knowledge.retrieve import search_terms, unmapped_labels
    from medtrinity_core.knowledge.vocabulary import load_vocabulary, normal_form

    vocabulary = load_vocabulary()
    assert normal_form("Pleural_Effusion+ ") == "pleural effusion"
    for label, term in (("pleural_effusion", "pleural effusion"), ("PTX", "pneumothorax"), ("HCC", "hepatocellular carcinoma"), ("lung-nodule", "pulmonary nodule"),
                        ("AMD", "macular degeneration"), ("Kidney_Left", "kidney")):
        assert vocabulary.lookup(label).term == term, label
    assert vocabulary.lookup("PE").category == "finding" and vocabulary.lookup("aorta").category == "anatomy"
    assert dict(vocabulary.lookup("pleural effusion").appearance)["xray"].startswith("a brighter")
    # codes only from pydicom's codedict, and each one the concept it names
    coded = [t for t in vocabulary.terms if t.snomed]
    assert len(coded) >= 10
    wanted = {value for value, _ in (t.snomed for t in coded)}
    found = {}
    for name in codes.SCT.dir():
        code = getattr(codes.SCT, name)
        if str(code.value) in wanted:
            found.setdefault(str(code.value), set()).add(str(code.meaning))  # one code may carry several names (Tumor, Neoplasm)
    assert all(meaning in found.get(value, ()) for value, meaning in (t.snomed for t in coded))
    # unmapped labels pass through in normal form, flagged; never guessed
    assert search_terms(["mass+calcification"]) == ["mass calcification"]
    assert unmapped_labels(["mass+calcification", "polyp", "GGO"]) == ["GGO", "mass+calcification"]
    # a user's own file extends the bundled one and wins for names both define
    extra = tmp_path / "mine.yaml"
    extra.write_text("- term: ground-glass opacity\n  synonyms: [GGO]\n  category: finding\n  system: respiratory\n- term: colonic adenoma\n  synonyms: [polyp]\n")
    mine = load_vocabulary(str(extra))
    assert mine.lookup("ggo").term == "ground-glass opacity" and mine.lookup("polyp").term == "colonic adenoma"
    extra.write_text("- term: x\n  snomed: NoSuchConcept\n")
    with pytest.raises(ValueError, match="NoSuchConcept is not a SNOMED CT concept"):
        load_vocabulary.__wrapped__(str(extra))


def write_corpora(root):
    """A JSONL corpus in both MedRAG shapes and a folder of Markdown and text files."""
    (root / "pubmed").mkdir(parents=True)
    (root / "pubmed" / "part1.jsonl").write_text(
        '{"id": "d1", "title": "Pneumothorax after lung biopsy", "content": "A pneumothorax is air in the pleural space. It may follow a biopsy."}\n'
        '{"id": "d2", "text": "Pleural effusion is fluid between the pleura.", "metadata": {"title": "Pleural effusion", "url": "https://example.org/e"}}\n'
        '\n'
        '{"id": "d3", "title": "Copy", "content": "The liver is an organ."}\n'
    )
    (root / "notes").mkdir()
    (root / "notes" / "d1.md").write_text("# Colonic polyps\n\nA polyp is an extra piece of tissue. Most polyps are harmless.\n")
    (root / "notes" / "liver.txt").write_text("The liver is an organ.\n")  # repeats a JSONL passage: dropped
    return root


def test_jsonl_and_text_corpora_load_with_ids_qualified_by_corpus(tmp_path):
    from medtrinity_core.knowledge.corpora import load_corpora, parse_jsonl, parse_text
    from medtrinity_core.sources.schema import KnowledgeConfig

    root = write_corpora(tmp_path)
    jsonl = parse_jsonl(root / "pubmed")
    assert jsonl["passage_id"].to_list() == ["d1#0", "d2#0", "d3#0"] and jsonl["focus"].to_list() == ["Pneumothorax after lung biopsy", "Pleural effusion", "Copy"]
    assert jsonl["url"][1] == "https://example.org/e"
    text = parse_text(root / "notes")
    assert text["passage_id"].to_list() == ["d1#0", "liver#0"] and text["focus"][0] == "Colonic polyps" and "#" not in text["text"][0]
    both = load_corpora([KnowledgeConfig("pubmed-mini", "jsonl", root / "pubmed", "CC0-1.0"), KnowledgeConfig("notes", "text", root / "notes", "CC-BY-4.0")])
    assert both["passage_id"].to_list() == ["pubmed-mini:d1#0", "pubmed-mini:d2#0", "pubmed-mini:d3#0", "notes:d1#0"]  # d1 in both, distinct ids; liver repeated: dropped
    assert both["corpus"].to_list() == ["pubmed-mini"] * 3 + ["notes"]
    (root / "pubmed" / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a JSON object"):
        parse_jsonl(root / "pubmed")


def test_the_sources_file_takes_a_list_of_corpora(tmp_path):
    from medtrinity_core.errors import SourcesFileError

    write_corpora(tmp_path)
    (tmp_path / "data").mkdir()
    base = ("version: 1\nsources:\n  - {name: s1, modality: ct, license: CC0-1.0, root: data, layout: labeled_images, images: '(?P<label>a)\\.png'}\n"
            "knowledge:\n  - {name: pubmed-mini, format: jsonl, root: pubmed, license: CC0-1.0}\n  - {name: %s, format: %s, root: notes, license: CC-BY-4.0}\n")
    path = tmp_path / "sources.yaml"
    path.write_text(base % ("notes", "text"))
    assert [(c.name, c.format) for c in load_sources(path).corpora] == [("pubmed-mini", "jsonl"), ("notes", "text")]
    path.write_text(base % ("pubmed-mini", "text"))
    with pytest.raises(SourcesFileError, match=r"knowledge\[1\]\.name: duplicate corpus name 'pubmed-mini'"):
        load_sources(path)
    path.write_text(base % ("notes", "pdf"))
    with pytest.raises(SourcesFileError, match=r"knowledge\[1\]\.format: 'pdf' is not one of medquad, jsonl, text"):
        load_sources(path)
