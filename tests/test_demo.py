"""On the bundled demo, every passage cited answers the finding it was retrieved for: its MedQuAD focus is
in the allow-list below for that source and finding, or nothing is cited. Anatomy (organs, vessels, cell
nuclei) and a source's "normal" class are not queried at all. The grounded descriptions of the demo are
sentences with varied openings, and every one scores 1.0."""

from __future__ import annotations

import pytest

from medtrinity_core.describe.stage import describe, make_generator
from medtrinity_core.knowledge.corpora import load_corpora
from medtrinity_core.knowledge.retrieve import retrieve_context
from medtrinity_core.knowledge.store import (
    build,
    chunker_for,
    embedder_for,
    fetch_passages,
    open_collection,
)
from medtrinity_core.roi.extract import dataset_rois, extract_rois
from medtrinity_core.sources.schema import load_sources
from medtrinity_core.storage import Workdir

from .conftest import EXAMPLES, through_normalized

BREAST = {"Breast Cancer", "Breast Diseases"}
# (source, finding) -> the MedQuAD foci that answer it
ALLOWED = {
    ("pyradiomics-breast-mri", "breast lesion"): BREAST,
    ("sts-pet", "soft tissue sarcoma"): {"Adult Soft Tissue Sarcoma"},
    ("biomedparse-xray", "lung opacity"): {"Pneumonia", "Lung Diseases"},
    ("busi", "benign breast lesion"): BREAST,
    ("busi", "breast cancer"): {"Breast Cancer"},
    ("biomedparse-dermoscopy", "melanoma"): {"Melanoma", "Skin Cancer"},
    ("kvasir-seg", "colonic polyp"): {"Colonic Polyps", "Colon Cancer", "Colorectal Cancer"},
    ("biomedparse-pathology", "neoplastic cells"): {"Breast Cancer"},
}
MUST_CITE = {"sts-pet", "busi", "biomedparse-dermoscopy", "kvasir-seg"}  # retrieval working at all
NEVER_QUERIED = {"sam-med2d-ct", "drive", "dsb2018"}  # anatomy only


@pytest.fixture(scope="module")
def demo_context(tmp_path_factory):
    sources = load_sources(EXAMPLES / "sources.yaml")
    wd = Workdir.at(tmp_path_factory.mktemp("demo")).ensure()
    embedder = embedder_for(sources.retrieval)
    build(load_corpora(sources.corpora, chunker_for(sources.retrieval, embedder)), sources.retrieval, wd.chroma, embedder)
    collection = open_collection(sources.retrieval, wd.chroma)
    rows = []
    for src in sources.sources:
        _, _, _, images, _ = through_normalized(src, wd)
        rois, _ = extract_rois(src, images.iter_rows(named=True), wd)
        context = retrieve_context(src, images.iter_rows(named=True), dataset_rois(rois, src), collection, embedder)
        passages = fetch_passages(collection, [p["passage_id"] for refs in context["passages"].to_list() for p in refs])
        descriptions, quarantined, _ = describe(src, images.iter_rows(named=True), dataset_rois(rois, src), context, passages, make_generator(src.generator), wd)
        assert quarantined.height == 0
        described = {d["image_id"]: d for d in descriptions.iter_rows(named=True)}
        rows += [(src.name, {**row, "description": described[row["image_id"]]}) for row in context.iter_rows(named=True)]
    return rows


def test_every_passage_cited_on_the_demo_has_a_focus_in_the_allow_list(demo_context):
    cited = {}
    for source, row in demo_context:
        for passage in row["passages"]:
            key = (source, passage["finding"])
            assert key in ALLOWED, f"{source} image {row['image_id']} cites {passage['passage_id']} for an unexpected finding {passage['finding']!r}"
            assert passage["focus"] in ALLOWED[key], f"{source}: {passage['passage_id']} ({passage['focus']}) does not answer {passage['finding']}"
            cited.setdefault(source, 0)
            cited[source] += 1
    assert MUST_CITE <= set(cited), f"no passage cited for {sorted(MUST_CITE - set(cited))}"


def test_anatomy_and_normal_images_are_not_queried(demo_context):
    for source, row in demo_context:
        if source in NEVER_QUERIED:
            assert row["queries"] == [] and row["passages"] == [], (source, row["queries"])
        if source == "busi" and "normal" in row["coarse_caption"]:
            assert row["queries"] == [], row["coarse_caption"]
    assert any(source == "busi" and "normal" in row["coarse_caption"] for source, row in demo_context)  # the demo has a normal image


def test_the_demos_grounded_descriptions_are_varied_sentences_that_all_score_one(demo_context):
    descriptions = [row["description"] for _, row in demo_context]
    assert len(descriptions) >= 30
    assert all(d["faithfulness"] == 1.0 and d["contradictions"] == [] for d in descriptions), [
        (d["image_id"], d["faithfulness"], d["contradictions"]) for d in descriptions if d["faithfulness"] < 1.0 or d["contradictions"]]
    assert not any(d["text"].startswith("Modality:") for d in descriptions)
    openings = {" ".join(d["text"].split()[:2]) for d in descriptions}
    assert len(openings) >= 3, openings
    # the chest film's "lung opacity" mask covers both lung fields and measures darker than its surroundings
    suspects = {(source, s["label"]) for source, row in demo_context for s in row["description"]["annotation_suspect"]}
    assert ("biomedparse-xray", "lung opacity") in suspects
