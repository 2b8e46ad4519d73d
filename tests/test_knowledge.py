"""Corpora, tokenizer chunking, offline embeddings, the Chroma store, the vocabulary and retrieval."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.knowledge.chunking import Chunker
from medtrinity_core.knowledge.corpora import load_corpora
from medtrinity_core.knowledge.embed import Embedder
from medtrinity_core.knowledge.medquad import parse_medquad
from medtrinity_core.knowledge.retrieve import (
    coarse_caption,
    finding_queries,
    retrieve_context,
)
from medtrinity_core.knowledge.store import (
    build,
    chunker_for,
    fetch_passages,
    kb_version,
    open_collection,
)
from medtrinity_core.sources.schema import (
    KnowledgeConfig,
    RetrievalConfig,
)

from .conftest import EXAMPLES, KNOWLEDGE_INCLUDE

MEDQUAD = EXAMPLES / "knowledge" / "medquad"
WORDS = Chunker(lambda texts: [len(t.split()) for t in texts], 20, 7)  # words as tokens: arithmetic a reader can check


@pytest.fixture(scope="module")
def embedder():
    return Embedder()


@pytest.fixture(scope="module")
def chunker(embedder):
    return chunker_for(RetrievalConfig(), embedder)


def test_chunks_are_sentence_aligned_bounded_and_overlap_by_whole_sentences():
    text = " ".join(f"Sentence number {i} has six words." for i in range(10))
    chunks = WORDS(text)
    assert all(len(c.split()) <= 20 for c in chunks) and all(c.endswith(".") for c in chunks)
    # three six-word sentences fill a chunk; the next starts with the last one (6 <= 7 overlap tokens)
    assert chunks[0].split(".")[0] == "Sentence number 0 has six words" and chunks[1].startswith("Sentence number 2 has")
    assert [c.count("Sentence") for c in chunks] == [3, 3, 3, 3, 2]
    no_overlap = Chunker(WORDS.count, 20, 0)(text)
    assert " ".join(no_overlap) == text  # without overlap, nothing is repeated or lost
    long = "word " * 50 + "end."
    assert [len(c.split()) for c in WORDS(long)] == [20, 20, 11]  # a sentence over the limit is cut at words
    with pytest.raises(ValueError, match="overlap_tokens must be"):
        Chunker(WORDS.count, 20, 10)


def test_chunks_are_measured_in_the_embedders_own_tokens(embedder, chunker):
    answer = " ".join(f"Hepatocellular carcinoma number {i} is characterized by arterial hyperenhancement." for i in range(40))
    chunks = chunker(answer)
    assert len(chunks) > 1 and max(embedder.count_tokens(chunks)) <= chunker.max_tokens
    assert max(embedder.count_tokens(chunks)) > chunker.max_tokens * 0.7  # filled, not cut by word count
    assert embedder.count_tokens(["hepatocellular"])[0] > 1  # word pieces: a word count would be wrong
    with pytest.raises(ValueError, match="more than all-MiniLM-L6-v2 reads"):
        chunker_for(RetrievalConfig(max_tokens=400), embedder)


def test_medquad_passages_have_stable_ids_focus_and_umls_annotations(chunker):
    passages = parse_medquad(MEDQUAD, chunker, ("*/0000218.xml",))
    assert set(passages["focus"].to_list()) == {"Colonic Polyps"}
    assert passages["passage_id"].n_unique() == passages.height
    assert passages["passage_id"][0] == "4_MPlus_Health_Topics_QA/0000218/1#0"  # the document's path, pair and chunk
    assert set(passages["cuis"].to_list()) == {"C2911243; C0009376"} and set(passages["semantic_types"].to_list()) == {"T190; T033"}
    assert parse_medquad(MEDQUAD, chunker, ("*/0000218.xml",)).equals(passages)


def test_the_full_medquad_sample_has_unique_passage_ids_and_no_repeated_text(samples, chunker):
    passages = parse_medquad(samples / "knowledge" / "medquad", chunker)
    assert passages.height > 10_000
    assert passages["passage_id"].n_unique() == passages.height  # question ids repeat across collections
    assert passages["text"].n_unique() == passages.height
    same_qid = passages.filter(passages["passage_id"].str.contains("/0000019/1#0", literal=True))["passage_id"].to_list()
    assert len(same_qid) >= 2 and len({p.split("/")[0] for p in same_qid}) == len(same_qid)  # one per collection
    sample = passages.sample(300, seed=0)["text"].to_list()
    assert max(chunker.count(sample)) <= chunker.max_tokens


def test_vocabulary_cuis_are_those_medquad_annotates_for_the_term(samples):
    import xml.etree.ElementTree as ET

    from medtrinity_core.knowledge.vocabulary import load_vocabulary, normal_form

    annotated: dict[str, set] = {}
    for path in (samples / "knowledge" / "medquad").rglob("*.xml"):
        doc = ET.parse(path).getroot()
        annotated.setdefault(normal_form(doc.findtext("Focus", "")), set()).update(c.text.strip() for c in doc.iter("CUI") if c.text)
    coded = [t for t in load_vocabulary().terms if t.umls]
    assert len(coded) >= 12
    for term in coded:
        names = {normal_form(n) for n in (term.term, *term.synonyms)}
        foci = {f for f in annotated if f in names or f.rstrip("s") in names}
        assert set(term.umls) <= set().union(*(annotated[f] for f in foci)), term.term


CORPUS = [KnowledgeConfig("medquad-tiny", "medquad", MEDQUAD, "CC-BY-4.0", "Ben Abacha and Demner-Fushman 2019", tuple(KNOWLEDGE_INCLUDE))]


@pytest.fixture(scope="module")
def kb(tmp_path_factory, embedder, chunker):
    passages = load_corpora(CORPUS, chunker)
    path = tmp_path_factory.mktemp("chroma")
    version, rebuilt = build(passages, RetrievalConfig(), path, embedder)
    return passages, path, version, rebuilt


def test_embedder_is_local_normalized_and_prefixes_its_queries(embedder):
    vectors = embedder.embed_queries(["colon polyp", "a polyp in the colon", "melanoma of the skin"])
    assert vectors.shape == (3, 384) and np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-4)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2])
    assert embedder.model_id == "all-MiniLM-L6-v2"
    prefixed = Embedder(query_prefix="query: ")
    assert float(prefixed.embed_queries(["colon polyp"])[0] @ vectors[0]) < 0.999  # the prefix is embedded with the query
    assert np.allclose(prefixed.embed_passages(["colon polyp"])[0], embedder.embed_passages(["colon polyp"])[0], atol=1e-5)  # ...not with passages
    assert prefixed.signature != embedder.signature


def test_a_configured_embedder_folder_is_used_and_a_wrong_one_is_named(tmp_path, embedder):
    import shutil

    from medtrinity_core.knowledge.embed import default_model_dir

    mine = tmp_path / "my-minilm"
    shutil.copytree(default_model_dir(), mine)
    other = Embedder(str(mine))
    assert other.model_id == "my-minilm" and other.signature != embedder.signature
    assert np.allclose(other.embed_queries(["pleural effusion"]), embedder.embed_queries(["pleural effusion"]), atol=1e-5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no sentence-transformers or transformers model"):
        Embedder(str(tmp_path / "empty")).embed_queries(["x"])


def test_build_is_versioned_by_content_chunking_and_embedder(kb, embedder):
    passages, path, version, rebuilt = kb
    assert rebuilt and len(version) == 16
    assert build(passages, RetrievalConfig(), path, embedder) == (version, False)
    col = open_collection(RetrievalConfig(), path)
    assert col.count() == passages.height and col.metadata["kb_version"] == version
    assert kb_version(passages, embedder, RetrievalConfig(overlap_tokens=0)) != version
    assert kb_version(passages, Embedder(passage_prefix="passage: "), RetrievalConfig()) != version
    relicensed = passages.with_columns(pl.lit("CC0-1.0").alias("license"))
    assert kb_version(relicensed, embedder, RetrievalConfig()) != version  # a licence change reaches the passages


POLYP_ROI = {"image_id": "img-1", "roi_id": "r1", "label": "polyp", "area_px": 900, "size_class": "small", "method": "ground_truth_mask"}


def test_retrieval_finds_the_disease_of_the_image_and_ties_it_to_the_finding(kb, embedder):
    _passages, path, version, _ = kb
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg")
    image = {"image_id": "img-1", "masks": [{"label": "polyp"}], "labels": ["polyp"], "slice_axis": None}
    # the canonical term and synonyms, the measured facts, then the coarse caption's organ and modality
    assert finding_queries(src, image, [POLYP_ROI]) == [("colonic polyp", "colonic polyp, polyp, colon polyp, colorectal polyp, adenomatous polyp small colon endoscopy")]
    assert coarse_caption(src, image) == "endoscopy image of the colon with annotated polyp."
    col = open_collection(RetrievalConfig(), path)
    row = retrieve_context(src, [image], pl.DataFrame([POLYP_ROI]), col, embedder).row(0, named=True)
    scores = [p["score"] for p in row["passages"]]
    assert len(row["passages"]) == 3 and scores == sorted(scores, reverse=True) and row["kb_version"] == version
    assert row["passages"][0]["focus"] in {"Colonic Polyps", "Colon Cancer"}
    assert {(p["finding"], p["corpus"], p["license"], p["citation"]) for p in row["passages"]} == {("colonic polyp", "medquad-tiny", "CC-BY-4.0", "Ben Abacha and Demner-Fushman 2019")}
    got = fetch_passages(col, [p["passage_id"] for p in row["passages"]])
    assert set(got) == {p["passage_id"] for p in row["passages"]} and all(v["text"] and v["cuis"] for v in got.values())


def test_each_finding_on_an_image_gets_its_own_query_and_anatomy_none(kb, embedder):
    _, path, _, _ = kb
    src = load_sources(EXAMPLES / "sources.yaml").source("kvasir-seg").model_copy(update={"body_region": None})
    image = {"image_id": "img-1", "masks": [{"label": "polyp"}, {"label": "melanoma"}, {"label": "spleen"}], "labels": [], "slice_axis": None}
    rois = [POLYP_ROI, {**POLYP_ROI, "roi_id": "r2", "label": "melanoma", "area_px": 2000, "size_class": "large"},
            {**POLYP_ROI, "roi_id": "r3", "label": "melanoma", "area_px": 100}, {**POLYP_ROI, "roi_id": "r4", "label": "spleen"}]
    queries = finding_queries(src, image, rois)
    assert [f for f, _ in queries] == ["melanoma", "colonic polyp"]  # largest region first; spleen is anatomy: not queried
    assert queries[0][1].startswith("melanoma, malignant melanoma multiple large")
    row = retrieve_context(src.model_copy(update={"top_k": 2, "min_score": 0.4}), [image], pl.DataFrame(rois), open_collection(RetrievalConfig(), path), embedder).row(0, named=True)
    assert [p["finding"] for p in row["passages"]] == ["melanoma", "colonic polyp", "melanoma", "colonic polyp"]  # round robin
    focus = {p["finding"]: set() for p in row["passages"]}
    for p in row["passages"]:
        focus[p["finding"]].add(p["focus"])
    assert focus["melanoma"] <= {"Melanoma", "Skin Cancer"} and focus["colonic polyp"] <= {"Colonic Polyps", "Colon Cancer"}


def test_a_sources_terms_and_findings_decide_what_is_queried(tmp_path):
    from medtrinity_core.errors import SourcesFileError
    from medtrinity_core.knowledge.vocabulary import source_vocabulary

    (tmp_path / "data").mkdir()
    (tmp_path / "mine.yaml").write_text("- term: ground-glass opacity\n  synonyms: [GGO]\n  category: finding\n  system: respiratory\n")
    body = ("version: 1\nvocabulary: mine.yaml\nsources:\n  - name: s1\n    modality: ct\n    license: CC0-1.0\n    root: data\n    layout: labeled_images\n"
            "    images: '(?P<label>a)\\.png'\n    terms: {hazy: GGO, blob: %s}\n    findings: [hazy, blob, lesion+x]\n")
    path = tmp_path / "sources.yaml"
    path.write_text(body % "liver tumour")
    src = load_sources(path).source("s1")
    vocabulary = source_vocabulary(src)
    assert vocabulary.term("hazy").term == "ground-glass opacity" and vocabulary.term("blob").term == "liver tumor"  # the user's file, then the bundle
    assert vocabulary.category("hazy") == "finding" and vocabulary.category("lesion_x") == "finding" and vocabulary.is_finding("lesion x")
    assert vocabulary.category("aorta") == "anatomy" and vocabulary.category("polyp") is None and not vocabulary.is_finding("polyp")  # not listed
    assert vocabulary.unmapped(["hazy", "lesion+x", "polyp"]) == ["lesion+x"]
    image = {"image_id": "i", "masks": [], "labels": ["hazy", "polyp", "lesion+x"], "slice_axis": None}
    assert [f for f, _ in finding_queries(src, image, [])] == ["ground-glass opacity", "lesion x"]
    path.write_text(body % "no such thing")
    with pytest.raises(SourcesFileError, match=r"sources.yaml:10: sources\[0\]\.terms\.blob: 'no such thing' is not a term of the vocabulary"):
        load_sources(path)
    (tmp_path / "mine.yaml").write_text("- term: x\n  umls: [C12]\n")
    with pytest.raises(SourcesFileError, match=r"sources.yaml:2: vocabulary: .*C12 is not a UMLS CUI"):
        load_sources(path)


def test_retrieval_settings_are_checked_where_they_are_written(tmp_path):
    from medtrinity_core.errors import SourcesFileError

    (tmp_path / "data").mkdir()
    head = "version: 1\nsources:\n  - {name: s1, modality: ct, license: CC0-1.0, root: data, layout: labeled_images, images: '(?P<label>a)\\.png'}\nretrieval:\n"
    path = tmp_path / "sources.yaml"
    path.write_text(head + "  server: http://127.0.0.1:8123\n  token_env: MY_TOKEN\n  max_tokens: 128\n  overlap_tokens: 16\n  query_prefix: 'query: '\n")
    cfg = load_sources(path).retrieval
    assert (cfg.server, cfg.token_env, cfg.max_tokens, cfg.overlap_tokens, cfg.query_prefix, cfg.model_dir) == ("http://127.0.0.1:8123", "MY_TOKEN", 128, 16, "query: ", None)
    for line, message in (("  token_env: 'abc def'", "retrieval.token_env: must name an environment variable"),
                          ("  server: 127.0.0.1:8000", "retrieval.server: must be http"),
                          ("  overlap_tokens: 90", "retrieval.overlap_tokens: must be under half of max_tokens"),
                          ("  model_dir: nowhere", "retrieval.model_dir: folder .*nowhere does not exist")):
        path.write_text(head + line + "\n")
        with pytest.raises(SourcesFileError, match=r"sources.yaml:5: " + message):
            load_sources(path)


def test_without_a_knowledge_base_the_context_cites_nothing(embedder):
    src = load_sources(EXAMPLES / "sources.yaml").source("busi")
    image = {"image_id": "img-1", "masks": [], "labels": ["benign"], "slice_axis": None}
    ctx = retrieve_context(src, [image], pl.DataFrame(schema={"image_id": pl.String}), None, embedder)
    assert ctx["passages"].to_list() == [[]] and ctx["kb_version"][0] == ""
    assert ctx["queries"][0].to_list() == [{"finding": "benign breast lesion", "query": "benign breast lesion, benign breast mass, benign breast disease, fibroadenoma, breast cyst, fibrocystic breast changes breast ultrasound"}]
    assert ctx["coarse_caption"][0] == "ultrasound image of the breast, labelled benign by the source."


def test_passages_under_the_score_floor_are_not_cited(kb, embedder):
    _, path, _, _ = kb
    sources = load_sources(EXAMPLES / "sources.yaml")
    lesion = {"image_id": "img-1", "masks": [{"label": "mass+calcification"}], "labels": [], "slice_axis": None}
    polyp = {"image_id": "img-2", "masks": [{"label": "polyp"}], "labels": ["polyp"], "slice_axis": None}
    col = open_collection(RetrievalConfig(), path)
    microscopy, endoscopy = sources.source("dsb2018"), sources.source("kvasir-seg")
    none = pl.DataFrame(schema={"image_id": pl.String})
    loose = retrieve_context(microscopy.model_copy(update={"min_score": 0.0}), [lesion], none, col, embedder)
    assert len(loose["passages"][0]) == 3  # without a floor, something is always cited
    assert retrieve_context(microscopy.model_copy(update={"min_score": 0.5}), [lesion], none, col, embedder)["passages"].to_list() == [[]]
    scores = [p["score"] for p in retrieve_context(endoscopy.model_copy(update={"min_score": 0.5}), [polyp], none, col, embedder)["passages"][0]]
    assert scores and min(scores) >= 0.5  # passages about polyps answer a polyp


def test_mmr_trades_relevance_for_diverse_passages(kb, embedder):
    from medtrinity_core.knowledge.retrieve import search

    _, path, _, _ = kb
    col = open_collection(RetrievalConfig(), path)
    query = ["colonic polyp, colon polyp colon endoscopy"]
    plain = search(col, embedder, query, 3, 0.0)[query[0]]
    diverse = search(col, embedder, query, 3, 0.0, diversity=0.3)[query[0]]
    assert diverse[0]["passage_id"] == plain[0]["passage_id"]  # the first pick is the most relevant either way

    def redundancy(hits):
        vectors = embedder.embed_passages([h["text"] for h in hits])
        return max(float(vectors[i] @ vectors[j]) for i in range(len(hits)) for j in range(i + 1, len(hits)))

    assert redundancy(diverse) < redundancy(plain)
    assert len({h["passage_id"] for h in diverse}) == 3


def test_knowledge_query_prints_the_top_passages_as_json(embedder, chunker, tmp_path):
    import json
    import subprocess
    import sys

    from medtrinity_core.storage import Workdir

    passages = load_corpora(CORPUS, chunker)
    build(passages, RetrievalConfig(), Workdir.at(tmp_path).chroma, embedder)
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "polyp", "--modality", "endoscopy",
                          "--body-region", "colon", "--k", "2", "--json", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert len(hits) == 2 and set(hits[0]) == {"passage_id", "corpus", "focus", "title", "score", "text"}
    assert hits[0]["focus"] in {"Colonic Polyps", "Colon Cancer"} and hits[0]["corpus"] == "medquad-tiny" and hits[0]["score"] >= hits[1]["score"]
    assert hits[0]["title"].endswith("?") and hits[0]["passage_id"] in set(passages["passage_id"])
    text = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "benign", "--sources", str(EXAMPLES / "sources.yaml"),
                           "--source", "busi", "--k", "1", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120, check=False)
    assert text.returncode == 0 and text.stdout.startswith("query: benign breast lesion, ") and "breast ultrasound" in text.stdout.splitlines()[0]
    missing = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "knowledge", "query", "--label", "x", "--workdir", str(tmp_path / "none")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no knowledge base in")


def test_the_vocabulary_maps_labels_as_sources_write_them_and_passes_the_rest_through(tmp_path):
    from pydicom.sr.codedict import codes

    from medtrinity_core.knowledge.retrieve import finding_words
    from medtrinity_core.knowledge.vocabulary import (
        SourceVocabulary,
        load_vocabulary,
        normal_form,
    )

    vocabulary = load_vocabulary()
    assert normal_form("Pleural_Effusion+ ") == "pleural effusion"
    for label, term in (("pleural_effusion", "pleural effusion"), ("PTX", "pneumothorax"), ("HCC", "hepatocellular carcinoma"), ("lung-nodule", "pulmonary nodule"),
                        ("AMD", "macular degeneration"), ("Kidney_Left", "kidney"), ("heart_atrium_left", "heart"), ("heart_ventricle_right", "heart"),
                        ("hepatic parenchyma", "liver"), ("liver_tumor", "liver tumor")):
        assert vocabulary.lookup(label).term == term, label
    assert vocabulary.lookup("PE").category == "finding" and vocabulary.lookup("aorta").category == "anatomy"
    # a side is matched without it, and only a side: an unknown structure stays unknown
    assert vocabulary.lookup("lung_lower_lobe_right").term == "lung" and vocabulary.lookup("gluteus maximus left").term == "gluteal muscles"
    assert vocabulary.lookup("rib_left_9").term == "rib" and vocabulary.lookup("vertebrae_T9").term == "vertebra"  # levels too
    assert vocabulary.lookup("iliopsoas_left") is None and vocabulary.lookup("left") is None
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
    assert finding_words(SourceVocabulary(vocabulary), "mass+calcification") == ("mass calcification", ["mass calcification"])
    assert SourceVocabulary(vocabulary).unmapped(["mass+calcification", "polyp", "GGO"]) == ["GGO", "mass+calcification"]
    # a user's own file extends the bundled one and wins for names both define
    extra = tmp_path / "mine.yaml"
    extra.write_text("- term: ground-glass opacity\n  synonyms: [GGO]\n  category: finding\n  system: respiratory\n- term: colonic adenoma\n  synonyms: [polyp]\n")
    mine = load_vocabulary(str(extra))
    assert mine.lookup("ggo").term == "ground-glass opacity" and mine.lookup("polyp").term == "colonic adenoma"
    extra.write_text("- term: x\n  snomed: NoSuchConcept\n")
    with pytest.raises(ValueError, match="NoSuchConcept is not a SNOMED CT concept"):
        load_vocabulary(str(extra))


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
    from medtrinity_core.knowledge.corpora import parse_jsonl, parse_text

    root = write_corpora(tmp_path)
    jsonl = parse_jsonl(root / "pubmed", WORDS)
    assert jsonl["passage_id"].to_list() == ["d1#0", "d2#0", "d3#0"] and jsonl["focus"].to_list() == ["Pneumothorax after lung biopsy", "Pleural effusion", "Copy"]
    assert jsonl["url"][1] == "https://example.org/e"
    text = parse_text(root / "notes", WORDS)
    assert text["passage_id"].to_list() == ["d1#0", "liver#0"] and text["focus"][0] == "Colonic polyps" and "#" not in text["text"][0]
    both = load_corpora([KnowledgeConfig("pubmed-mini", "jsonl", root / "pubmed", "CC0-1.0"), KnowledgeConfig("notes", "text", root / "notes", "CC-BY-4.0", "Notes 2026")], WORDS)
    assert both["passage_id"].to_list() == ["pubmed-mini:d1#0", "pubmed-mini:d2#0", "pubmed-mini:d3#0", "notes:d1#0"]  # d1 in both, distinct ids; liver repeated: dropped
    assert both["corpus"].to_list() == ["pubmed-mini"] * 3 + ["notes"]
    assert both["license"].to_list() == ["CC0-1.0"] * 3 + ["CC-BY-4.0"] and both["citation"].to_list() == [""] * 3 + ["Notes 2026"]
    (root / "pubmed" / "bad.jsonl").write_text("{not json}\n")
    with pytest.raises(ValueError, match="bad.jsonl:1: not a JSON object"):
        parse_jsonl(root / "pubmed", WORDS)


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
