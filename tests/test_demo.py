"""On the bundled demo, every passage cited answers the finding it was retrieved for: its MedQuAD focus is
in the allow-list below for that source and finding, or nothing is cited. Anatomy (organs, vessels, cell
nuclei) and a source's "normal" class are not queried at all. The grounded descriptions of the demo are
sentences with varied openings, and every one scores 1.0."""

from __future__ import annotations

import pytest

from medtrinity_core.config import load_sources
from medtrinity_core.knowledge.corpora import load_corpora
from medtrinity_core.knowledge.store import build, chunker_for, embedder_for
from medtrinity_core.pipeline import LocalServices, run_chain
from medtrinity_core.sources.shards import update_plan
from medtrinity_core.storage import Workdir

from .conftest import EXAMPLES

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
    rows = []
    for src in sources.sources:  # the chain through the stage runner, in plain Python (no Dagster)
        for shard in update_plan(wd, src):
            out = run_chain(src, shard, wd, end="descriptions", services=LocalServices(sources.retrieval))
            assert out["descriptions"].rejected.height == 0
            described = {d["image_id"]: d for d in out["descriptions"].rows.iter_rows(named=True)}
            rows += [(src.name, {**row, "description": described[row["image_id"]]}) for row in out["context"].rows.iter_rows(named=True)]
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
