"""The grounded generator states measured facts and retrieved text, nothing else."""

from __future__ import annotations

import polars as pl

from medtrinity_core.describe.grounded import describe, describe_image, supporting_sentence
from medtrinity_core.records import CONTEXT, ROIS, frame
from medtrinity_core.sources.schema import SourceConfig

SRC = SourceConfig(name="s", modality="ct", license="CC0-1.0", root=__import__("pathlib").Path("."), layout="image_masks", images=".*", body_region="abdomen")


def roi(roi_id, label, area, location, contrast="hyperdense", relations=()):
    return {"roi_id": roi_id, "label": label, "area_px": area, "area_ratio": area / 10000, "size_class": "medium", "area_mm2": None,
            "location": location, "contrast": contrast, "texture": "homogeneous", "colour": None, "relations": list(relations),
            "method": "ground_truth_mask", "model_id": None, "confidence": None}


IMAGE = {"image_id": "img-1", "masks": [{"label": "liver"}, {"label": "tumor"}], "labels": ["liver", "tumor"], "slice_axis": None, "slice_index": None}
PASSAGES = {"p1#0": {"text": "The liver is an organ. A liver tumor may be benign.", "focus": "Liver Cancer"}}
def ref(pid: str, finding: str = "liver tumor", score: float = 0.7) -> dict:
    return {"passage_id": pid, "finding": finding, "score": score, "focus": "Liver Cancer", "corpus": "c", "license": "CC0-1.0", "citation": ""}


CONTEXT_ROW = {"image_id": "img-1", "passages": [ref("missing#0"), ref("p1#0")]}


def test_five_facets_from_measured_facts():
    rois = [
        roi("r1", "liver", 2000, "anterior, patient's right", relations=[{"other_roi_id": "r2", "other_label": "tumor", "relation": "contains", "distance_pct": 3.0}]),
        roi("r2", "tumor", 300, "anterior, patient's right", contrast="hypodense", relations=[{"other_roi_id": "r1", "other_label": "liver", "relation": "inside", "distance_pct": 3.0}]),
    ]
    out = describe_image(SRC, IMAGE, rois, CONTEXT_ROW, PASSAGES)
    f = out["facets"]
    assert f["modality"] == "Modality: CT."
    assert f["organ_tissue"] == "Organ and tissue: the abdomen; annotated: liver, tumor."
    assert "liver: in the anterior, patient's right, covering 20.0% of the image" in f["roi_location"]
    assert "tumor: hypodense relative to the surrounding tissue" in f["colour_texture"]
    assert f["relationships"] == "Region relationships: the liver contains the tumor (3% of the image diagonal between centres)."
    # only passages that exist are cited, and the quoted sentence mentions the labels
    assert out["cited_passages"] == ["p1#0"]
    assert f["knowledge"] == "Related knowledge: [p1#0] (Liver Cancer; on liver tumor) The liver is an organ."
    assert out["text"].startswith("Modality: CT. Organ and tissue: the abdomen")


def test_shape_containment_volume_and_model_are_stated_when_measured():
    tumor = {**roi("r2", "tumor", 300, "anterior, patient's right"), "shape": "round", "margin": "well-circumscribed",
             "within_location": "within the liver, in its anterior part", "volume_ml": 12.34,
             "method": "expert_model", "model_id": "torchscript:unet.ts@abc", "confidence": 0.934}
    facet = describe_image(SRC, IMAGE, [tumor], None, {})["facets"]["roi_location"]
    assert facet == ("ROI location: tumor: within the liver, in its anterior part (anterior, patient's right), covering 3.0% of the image, "
                     "medium; 12.3 ml in the whole volume, round and well-circumscribed, segmented by model torchscript:unet.ts@abc (confidence 0.93).")


def test_nothing_is_invented_without_regions_or_knowledge():
    image = {**IMAGE, "masks": [], "labels": ["benign"]}
    out = describe_image(SRC, image, [], None, {})
    assert out["facets"]["roi_location"] == "ROI location: no region is annotated; the source labels the whole image benign."
    assert out["facets"]["relationships"] == "Region relationships: none, as no region is annotated."
    assert out["facets"]["knowledge"] == "Related knowledge: no supporting passage was found."
    assert out["cited_passages"] == []
    for word in ("tumor", "liver", "hyperdense", "left", "right"):
        assert word not in out["text"]


def test_supporting_sentence_prefers_label_terms():
    assert supporting_sentence("Cancer is common. Polyps grow in the colon.", ["polyp"]) == "Polyps grow in the colon."
    assert supporting_sentence("First one. Second one.", ["zzzz"]) == "First one."


def test_describe_builds_one_row_per_image():
    rois = frame([{**roi("r1", "liver", 2000, "centre of the image"), "image_id": "img-1", "rle_counts": []}], ROIS)
    ctx = frame([{**CONTEXT_ROW, "source": "s", "coarse_caption": "", "queries": [{"finding": "liver tumor", "query": "q"}], "kb_version": "v"}], CONTEXT)
    df = describe(SRC, [IMAGE, {**IMAGE, "image_id": "img-2"}], rois, ctx, PASSAGES)
    assert df["image_id"].to_list() == ["img-1", "img-2"]
    assert df.filter(pl.col("image_id") == "img-2")["cited_passages"].to_list() == [[]]
    assert df["generator"].unique().to_list() == ["grounded"]
