"""The faithfulness scorer against planted errors written as free-form sentences the grounded generator
never produces, with synonyms; and the partition gate over the scores."""

from __future__ import annotations

import polars as pl
import pytest

from medtrinity_core.describe.facts import Facts, LabelFacts
from medtrinity_core.describe.faithfulness import score
from medtrinity_core.quality import checks


def label(name, **kw) -> LabelFacts:
    base = {"label": name, "term": None, "category": "finding", "count": 1, "side": "left", "size_class": "small", "area_pct": 0.8, "area_mm2": None, "volume_ml": None,
                "location": "posterior, patient's left", "within": None, "shape": "round", "margin": "well-circumscribed", "contrast": "hypodense", "texture": "homogeneous",
                "colour": None, "method": "ground_truth_mask", "model_id": None, "confidence": None}
    return LabelFacts(**{**base, **kw})


CYST = Facts("img-1", "ct", "abdomen", "axial", 12, True, labels=(label("renal cyst", term="kidney cyst"),))
RIGHT = "Computed tomography of the abdomen shows a small renal cyst on the left."


def test_a_faithful_free_form_description_scores_one():
    s = score(CYST, RIGHT)
    assert (s.faithfulness, s.required, s.contradictions) == (1.0, 5, [])  # modality, organ, named, side, size
    assert score(CYST, "Axial CT through the abdomen: a tiny, round kidney cyst sits in the sinistral kidney.").faithfulness == 1.0


@pytest.mark.parametrize("text, facet, claim", [
    ("Computed tomography of the abdomen shows a small renal cyst on the right.", "roi_location", "renal cyst: right"),
    ("Computed tomography of the abdomen shows a small dextral renal cyst.", "roi_location", "renal cyst: right"),
    ("Computed tomography of the abdomen shows a small renal cyst in the R kidney.", "roi_location", "renal cyst: right"),
    ("Computed tomography of the brain shows a small renal cyst on the left.", "organ_tissue", "brain"),
    ("An MR image of the abdomen shows a small renal cyst on the left.", "modality", "mr"),
    ("Magnetic resonance of the abdomen shows a small renal cyst on the left.", "modality", "magnetic resonance"),
    ("Computed tomography of the abdomen shows a large renal cyst on the left.", "roi_location", "renal cyst: large"),
    ("Computed tomography of the abdomen shows a small renal cyst on the left, covering 12% of the image.", "roi_location", "renal cyst: 12% of the image"),
    ("Computed tomography of the abdomen shows two small renal cysts on the left.", "roi_location", "two small renal cysts"),
    ("Computed tomography of the abdomen shows a small renal cyst on the left and a pneumothorax.", "roi_location", "pneumothorax"),
])
def test_each_planted_error_is_a_contradiction(text, facet, claim):
    s = score(CYST, text)
    assert {"facet": facet, "claim": claim} in [{k: c[k] for k in ("facet", "claim")} for c in s.contradictions], s.contradictions


def test_a_text_that_states_nothing_scores_zero_and_omissions_lower_the_score():
    assert score(CYST, "").faithfulness == 0.0
    assert score(CYST, "Nothing to see here.").faithfulness == 0.0
    partial = score(CYST, "Computed tomography of the abdomen shows a renal cyst.")  # no side, no size
    assert partial.faithfulness == pytest.approx(3 / 5) and partial.contradictions == []


def test_facets_of_a_parsed_answer_keep_quoted_knowledge_out_of_the_claims():
    facets = {"modality": "Axial CT.", "organ_tissue": "The abdomen.", "roi_location": "A small renal cyst on the left.", "colour_texture": "",
              "relationships": "None.", "knowledge": "Breast cancer can spread to the brain [p#0]."}
    s = score(CYST, " ".join(facets.values()), facets)
    assert s.faithfulness == 1.0 and s.contradictions == []


def test_sides_across_the_midline_and_other_modalities_that_belong():
    crossing = Facts("img-2", "pet", "chest", None, None, True, labels=(label("lymphoma", term="lymphoma", location="patient's right, extending across the midline", side="right"),))
    s = score(crossing, "PET/CT of the chest: a small lymphoma on the right, extending across the midline.")
    assert s.faithfulness == 1.0 and s.contradictions == []


def test_annotation_suspects_compare_the_expected_appearance_with_the_measured_contrast():
    opacity = Facts("img-3", "xray", "chest", None, None, True, labels=(label("lung opacity", term="lung opacity", contrast="more radiolucent",
                                                                          expected="brighter than the aerated lung around it"),))
    s = score(opacity, "An X-ray of the chest shows a small lung opacity on the left.")
    assert s.annotation_suspect == [{"label": "lung opacity", "expected": "brighter than the aerated lung around it", "measured": "more radiolucent"}]
    assert s.faithfulness == 1.0  # a suspect annotation does not change the score
    agrees = Facts("img-4", "xray", "chest", None, None, True, labels=(label("lung opacity", term="lung opacity", contrast="more radiopaque",
                                                                         expected="brighter than the aerated lung around it"),))
    assert score(agrees, "x").annotation_suspect == []


def test_the_gate_fails_a_partition_on_its_mean_or_its_contradiction_rate():
    def rows(scores, contradicted):
        return pl.DataFrame({"image_id": [f"i{n}" for n in range(len(scores))], "faithfulness": scores,
                             "contradictions": [[{"facet": "modality", "claim": "mr", "fact": "ct"}] if c else [] for c in contradicted]},
                            schema={"image_id": pl.String, "faithfulness": pl.Float64, "contradictions": pl.List(pl.Struct({"facet": pl.String, "claim": pl.String, "fact": pl.String}))})

    ok, meta = checks.faithfulness(rows([1.0] * 20, [False] * 20), 0.9, 0.05)
    assert ok and meta["mean_faithfulness"] == 1.0
    ok, meta = checks.faithfulness(rows([1.0] * 16 + [0.4, 0.2, 0.3, 0.5], [False] * 20), 0.9, 0.05)
    assert not ok and meta["mean_faithfulness"] == pytest.approx(0.87)
    assert [w["image_id"] for w in meta["worst"][:2]] == ["i17", "i18"]  # the worst rows are named
    ok, meta = checks.faithfulness(rows([1.0] * 20, [True] * 2 + [False] * 18), 0.9, 0.05)
    assert not ok and meta["contradiction_rate"] == 0.1
