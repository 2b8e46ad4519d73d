"""The grounded generator writes sentences from measured facts and retrieved text, nothing else; the
descriptions stage caches, scores and accounts for every image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image

from medtrinity_core.describe.facts import image_facts
from medtrinity_core.describe.grounded import GroundedGenerator, supporting_sentence
from medtrinity_core.describe.stage import describe
from medtrinity_core.records import CONTEXT, ROIS, frame
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

SRC = SourceConfig(name="s", modality="ct", license="CC0-1.0", root=Path("."), layout="image_masks", images=".*", body_region="abdomen")


def roi(roi_id, label, area, location, contrast="hyperdense", relations=(), size="medium"):
    return {"roi_id": roi_id, "label": label, "area_px": area, "area_ratio": area / 10000, "size_class": size, "area_mm2": None,
            "location": location, "contrast": contrast, "texture": "homogeneous", "colour": None, "relations": list(relations),
            "method": "ground_truth_mask", "model_id": None, "confidence": None, "shape": "oval", "margin": "lobulated"}


IMAGE = {"image_id": "img-1", "masks": [{"label": "liver"}, {"label": "tumor"}], "labels": ["liver", "tumor"], "slice_axis": None, "slice_index": None}
PASSAGES = {"p1#0": {"text": "The liver is an organ. A liver tumor may be benign.", "focus": "Liver Cancer"}}


def ref(pid: str, finding: str = "liver tumor", score: float = 0.7) -> dict:
    return {"passage_id": pid, "finding": finding, "score": score, "focus": "Liver Cancer", "corpus": "c", "license": "CC0-1.0", "citation": ""}


CONTEXT_ROW = {"image_id": "img-1", "passages": [ref("missing#0"), ref("p1#0")]}
LIVER_TUMOR = [
    roi("r1", "liver", 2000, "anterior, patient's right", relations=[{"other_roi_id": "r2", "other_label": "tumor", "relation": "contains", "distance_pct": 3.0}]),
    roi("r2", "tumor", 300, "anterior, patient's right", contrast="hypodense", size="small",
        relations=[{"other_roi_id": "r1", "other_label": "liver", "relation": "inside", "distance_pct": 3.0}]),
]


def generate(image, rois, context=None, passages=None) -> dict:
    return GroundedGenerator().generate([(image_facts(SRC, image, rois, context, passages or {}), None)])[0]


def test_sentences_state_the_findings_first_with_their_measured_facts():
    out = generate(IMAGE, LIVER_TUMOR, CONTEXT_ROW, PASSAGES)
    f = out["facets"]
    assert "CT image" in f["modality"] and "abdomen" in f["organ_tissue"]
    location = f["roi_location"]
    assert location.index("tumor") < location.index("liver")  # the finding (unmapped: a finding) before the anatomy
    assert "small, oval" in location and "anterior, patient's right" in location and "3.0% of the image" in location
    assert "hypodense relative to" in f["colour_texture"] or "appears hypodense" in f["colour_texture"] or "looks hypodense" in f["colour_texture"]
    assert "the liver contains the tumor (3% of the image diagonal between centres)" in f["relationships"].lower()
    assert f["relationships"].count("tumor") == 1  # the pair is stated once
    # only passages that exist are cited, each with the finding it answers; the quoted sentence names it
    assert out["cited_passages"] == ["p1#0"]
    assert "liver tumor" in f["knowledge"] and '"The liver is an organ."' in f["knowledge"] and "[p1#0]" in f["knowledge"]
    assert not out["text"].startswith("Modality:") and out["text"].endswith(".")


def test_phrasings_vary_by_image_but_not_by_run():
    texts = {generate({**IMAGE, "image_id": f"img-{n}"}, LIVER_TUMOR)["facets"]["roi_location"].split(" ")[0] for n in range(30)}
    assert len(texts) >= 3  # at least three openings across thirty images
    assert generate(IMAGE, LIVER_TUMOR) == generate(IMAGE, LIVER_TUMOR)


def test_volume_shape_and_model_are_stated_when_measured():
    tumor = {**roi("r2", "tumor", 300, "anterior, patient's right"), "shape": "round", "margin": "well-circumscribed",
             "within_location": "within the liver, in its anterior part", "volume_ml": 12.34,
             "method": "expert_model", "model_id": "torchscript:unet.ts@abc", "confidence": 0.934}
    location = generate(IMAGE, [tumor])["facets"]["roi_location"]
    assert "within the liver, in its anterior part (anterior, patient's right)" in location and "12.3 ml in the whole volume" in location
    assert "well-circumscribed" in location and "found by the expert model torchscript:unet.ts@abc (confidence 0.93), not annotated by hand" in location


def test_nothing_is_invented_without_regions_or_knowledge():
    out = generate({**IMAGE, "masks": [], "labels": ["benign"]}, [])
    assert "benign" in out["facets"]["roi_location"] and "no region" in out["facets"]["roi_location"].lower()
    assert "No relationship" in out["facets"]["relationships"] and "supporting passage" in out["facets"]["knowledge"]
    assert out["cited_passages"] == []
    for word in ("tumor", "liver", "hyperdense", "left", "right"):
        assert word not in out["text"]


def test_supporting_sentence_prefers_label_terms():
    assert supporting_sentence("Cancer is common. Polyps grow in the colon.", ["polyp"]) == "Polyps grow in the colon."
    assert supporting_sentence("First one. Second one.", ["zzzz"]) == "First one."


def test_the_stage_scores_every_row_caches_generation_and_quarantines_a_failure(tmp_path):
    wd = Workdir.at(tmp_path).ensure()
    uri = "images/x.png"
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / uri)
    images = [{**IMAGE, "image_id": f"img-{n}", "item_id": f"item-{n}", "relpath": f"{n}.png", "image_uri": uri, "image_sha256": "a" * 64} for n in (1, 2)]
    rois = frame([{**r, "image_id": "img-1", "rle_counts": []} for r in LIVER_TUMOR], ROIS)
    ctx = frame([{**CONTEXT_ROW, "source": "s", "coarse_caption": "", "queries": [{"finding": "liver tumor", "query": "q"}], "kb_version": "v"}], CONTEXT)
    df, q, counts = describe(SRC, images, rois, ctx, PASSAGES, GroundedGenerator(), wd)
    assert df["image_id"].to_list() == ["img-1", "img-2"] and q.height == 0 and counts == {"generated": 2, "cached": 0}
    assert df["faithfulness"].to_list() == [1.0, 1.0] and df["generator"].unique().to_list() == ["grounded"]
    assert df.filter(pl.col("image_id") == "img-2")["cited_passages"].to_list() == [[]]
    again, _, counts = describe(SRC, images, rois, ctx, PASSAGES, GroundedGenerator(), wd)
    assert counts == {"generated": 0, "cached": 2} and again.equals(df)  # a re-run generates nothing, writes the same rows

    class Failing(GroundedGenerator):
        prompt_version = "other"

        def generate(self, batch):
            return [{"error": "server said 500 five times"} for _ in batch]

    df, q, _ = describe(SRC, images, rois, ctx, PASSAGES, Failing(), wd)
    assert df.height == 0 and q["reason"].to_list() == ["generator_error"] * 2 and q["detail"][0] == "server said 500 five times"


def test_the_generator_is_chosen_per_source_over_a_top_level_default(tmp_path):
    import pytest

    from medtrinity_core.config import load_sources
    from medtrinity_core.errors import SourcesFileError

    (tmp_path / "data").mkdir()
    (tmp_path / "mine.txt").write_text("Describe the {modality} image of the {organ}: {facts}")
    head = ("version: 1\ngenerator: {backend: openai, url: 'http://127.0.0.1:9/v1', model: vlm, concurrency: 8, api_key_env: VLM_KEY}\nsources:\n"
            "  - {name: s1, modality: ct, license: CC0-1.0, root: data, layout: labeled_images, images: '(?P<label>a)\\.png'}\n"
            "  - {name: s2, modality: ct, license: CC0-1.0, root: data, layout: labeled_images, images: '(?P<label>a)\\.png', generator: %s}\n")
    path = tmp_path / "sources.yaml"
    path.write_text(head % "{prompt: mine.txt, temperature: 0.2}")
    s1, s2 = load_sources(path).sources
    assert (s1.generator.backend, s1.generator.concurrency, s1.generator.prompt) == ("openai", 8, "describe-v1")
    assert (s2.generator.backend, s2.generator.concurrency, s2.generator.temperature, s2.generator.prompt) == ("openai", 8, 0.2, str(tmp_path / "mine.txt"))
    for override, message in (("{backend: grounded}", None),
                              ("{backend: llama}", r"sources\[1\]\.generator\.backend: 'llama' is not one of grounded, transformers, openai"),
                              ("{prompt: nope}", r"sources\[1\]\.generator\.prompt: prompt 'nope' is neither a bundled template"),
                              ("{api_key_env: 'sk-123'}", r"sources\[1\]\.generator\.api_key_env: must name an environment variable"),
                              ("{device: gpu0}", r"sources\[1\]\.generator\.device: must be auto, cpu, cuda or cuda:N")):
        path.write_text(head % override)
        if message is None:
            assert load_sources(path).sources[1].generator.backend == "grounded"
            continue
        with pytest.raises(SourcesFileError, match=r"sources.yaml:5: " + message):
            load_sources(path)
    (tmp_path / "mine.txt").write_text("Describe {image}")
    path.write_text(head % "{prompt: mine.txt}")
    with pytest.raises(SourcesFileError, match=r"unknown placeholder \{image\}"):
        load_sources(path)
