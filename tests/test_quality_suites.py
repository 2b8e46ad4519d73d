"""Each data-quality expectation made to fail on purpose, the patient-data scan, and the blocking of
downstream stages by a failed suite."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medtrinity_core.quality import suites
from medtrinity_core.quality.suites import patient_data_findings
from medtrinity_core.storage import Workdir


def failing(result) -> dict[str, list[str]]:
    """expectation -> failing row ids, errors and warnings together (warnings marked)."""
    out = {e["expectation"]: e["examples"] for e in result.errors}
    out.update({f"warn: {e['expectation']}": e["examples"] for e in result.warnings})
    return out


@pytest.fixture()
def wd(tmp_path):
    wd = Workdir.at(tmp_path).ensure()
    (tmp_path / "m").mkdir()
    full = np.zeros((8, 10), np.uint8)
    full[2:5, 3:6] = 255
    for name, pixels in {"a": full, "empty": np.zeros((8, 10), np.uint8), "small": np.full((4, 4), 255, np.uint8)}.items():
        Image.fromarray(pixels).save(tmp_path / "m" / f"{name}.png")
    return wd


def image(image_id, masks=(), width=10, height=8, normalization=None):
    return {"image_id": image_id, "width": width, "height": height, "normalization": json.dumps(normalization or {"intensity": {"method": "none"}, "resized": [10, 8]}),
            "masks": [{"label": label, "uri": f"m/{name}.png", "sha256": sha, "annotation": None} for label, name, sha in masks]}


def test_the_normalized_suite_fails_on_each_planted_defect(wd):
    good = pl.DataFrame([image("i1", [("polyp", "a", "s1")])])
    result = suites.normalized_suite(good, wd, {})
    assert result.ok and not result.warnings and len(result.passed) == 7
    bad = pl.DataFrame([
        image("i1", [("polyp", "a", "s1"), ("copy", "a", "s1")]),  # a duplicated annotation file
        image("i1", [("polyp", "empty", "s2")]),  # a repeated id, an empty mask
        image(None, [("polyp", "small", "s3")], width=0),  # no id, no width, a mask of another shape
        image("i4", normalization={"intensity": {"method": "percentile", "percentiles": [99.5, 0.5], "lo": 1, "hi": 0}, "resized": [10, 8]}),
    ])
    found = failing(suites.normalized_suite(bad, wd, {}))
    assert found["image ids are unique"] == ["i1"] and found["image ids are non-null"] == ["null"]
    assert found["images have a positive size"] == ["null"] and found["normalization parameters are in range"] == ["i4"]
    assert found["every mask is non-empty"] == ["i1#0:polyp"] and found["every mask has its image's shape"] == ["None#0:polyp"]
    assert found["no two masks of an image are identical"] == ["i1#1:copy"]
    relaxed = suites.normalized_suite(bad, wd, {"severity": {"empty_mask": "warn"}})
    assert "every mask is non-empty" in {w["expectation"] for w in relaxed.warnings}  # severity configurable per source


def roi(roi_id, label="polyp", area=0.05, box=(1, 1, 5, 5), image_id="i1"):
    x0, y0, x1, y1 = box
    return {"roi_id": roi_id, "image_id": image_id, "label": label, "area_ratio": area, "x0": x0, "y0": y0, "x1": x1, "y1": y1, "img_w": 10, "img_h": 8}


def test_the_rois_suite_errors_on_impossible_values_and_warns_on_outliers_and_unmapped_labels():
    known = {"polyp", "liver"}.__contains__
    history = pl.DataFrame({"label": ["polyp"] * 20, "area_ratio": [0.004, 0.005, 0.006, 0.005] * 5})
    ok = suites.rois_suite(pl.DataFrame([roi("r1"), roi("r2", area=0.06)]), history, {}, known)
    assert ok.ok and not ok.warnings
    bad = pl.DataFrame([roi("r1"), roi("r1", area=0.0), roi(None, area=1.5), roi("r4", label=None), roi("r5", box=(5, 5, 12, 7)),
                        roi("r6", area=0.9), roi("r7", label="liverr")])
    found = failing(suites.rois_suite(bad, history, {}, lambda label: label is not None and known(label)))
    assert found["ROI ids are unique"] == ["r1"] and found["ROI ids are non-null"] == ["null"] and found["every ROI has a label"] == ["r4"]
    assert found["ROI boxes lie inside the image"] == ["r5"] and found["0 < area ratio <= 1"] == ["null", "r1"]
    assert found["warn: area ratios inside the label's range"] == ["null", "r1", "r6"]  # learned from the source's own 20 values
    assert found["warn: labels are vocabulary terms (else flagged unmapped)"] == ["r4", "r7"]
    configured = {"label_ranges": {"polyp": {"area_ratio": [0.01, 0.1], "count": [1, 2]}}, "severity": {"outlier": "error"}}
    crowded = pl.DataFrame([roi(f"r{n}") for n in range(3)])
    result = suites.rois_suite(crowded, pl.DataFrame(schema={"label": pl.String, "area_ratio": pl.Float64}), configured, known)
    assert failing(result)["ROIs per image inside the label's range"] == ["r0", "r1", "r2"] and not result.ok


def test_the_patient_data_scan():
    assert patient_data_findings("Seen on DOE^JOHN's film.") == ["person name 'DOE^JOHN'"]
    assert patient_data_findings("Scanned 20190314, again 2019-03-14 and 14/03/2019.") == ["date '20190314'", "date '2019-03-14'", "date '14/03/2019'"]
    assert patient_data_findings("Record 12345678 on file.") == ["MRN-like number '12345678'"]
    assert patient_data_findings("Smith was scanned.", {"Smith"}) == ["patient name token 'Smith'"]
    # passage ids, measurements, hex ids and quoted passages' eponyms are no patient data
    clean = ('Covering 3.5% of the image, about 123456 mm², image 5f3a1234567b, cited [medquad:1_CancerGov_QA/0000013_2_1/1#0]; '
             'a passage notes: "Wilms tumor and Hodgkin lymphoma are named after physicians."')
    assert patient_data_findings(clean, {"Wilms"}) == []


def test_the_descriptions_and_triplets_suites():

    facets = {k: "Stated." for k in suites.FACETS}
    desc = pl.DataFrame([
        {"image_id": "i1", "text": "This is a CT image of the abdomen. A small polyp lies on the left.", "facets": facets, "missing_facets": []},
        {"image_id": "i1", "text": "Short.", "facets": {**facets, "knowledge": None}, "missing_facets": []},
        {"image_id": "i3", "text": "A CT image of DOE^JANE taken 2020-01-02 in the abdomen, a long enough text.", "facets": {**facets, "knowledge": None}, "missing_facets": ["knowledge"]},
    ])
    found = failing(suites.descriptions_suite(desc, {}))
    assert found["image ids are unique"] == ["i1"] and found["description length within 40-6000 characters"] == ["i1"]
    assert found["every facet written or recorded missing"] == ["i1"]  # i3 records its missing facet
    assert found["no patient data in any text"] == ["i3"]
    rois = [{"label": "polyp", "location": "patient's left"}]
    prov = {"source_relpath": "images/a.png", "citation": None}
    trip = pl.DataFrame([
        {"triplet_id": "t1", "image_id": "i1", "modality": "ct", "license": "CC0-1.0", "description": "A CT image of the abdomen.", "coarse_caption": "", "facets": facets, "rois": rois, "provenance": prov},
        {"triplet_id": "t1", "image_id": "i2", "modality": "scan", "license": None, "description": "An image.", "coarse_caption": "", "facets": facets, "rois": rois, "provenance": prov},
        {"triplet_id": None, "image_id": "i3", "modality": "ct", "license": "CC0-1.0", "description": "A CT image of the abdomen.", "coarse_caption": "",
         "facets": facets, "rois": rois, "provenance": {**prov, "source_relpath": "patients/19900101/a.dcm"}},
    ])
    found = failing(suites.triplets_suite(trip, "ct", "abdomen", {}))
    assert found["triplet ids are unique"] == ["t1"] and found["triplet ids are non-null"] == ["null"]
    assert found["modalities are allowed"] == ["t1"] and found["every row carries a licence"] == ["t1"]
    assert found["each description names its modality and organ"] == ["t1"] and found["no patient data in any text field"] == ["null"]


def test_a_failed_rois_suite_blocks_the_partitions_descriptions(tiny_sources, tmp_path):
    import dagster as dg

    from medtrinity_core.config import load_sources

    from .conftest import materialize_source

    path = tiny_sources.parent / "strict-sources.yaml"
    path.write_text(tiny_sources.read_text() + "    quality: {label_ranges: {polyp: {area_ratio: [0.9, 1.0]}}, severity: {outlier: error}}\n")
    result = materialize_source(path, tmp_path / "wd")["result"]
    check = next(e for e in result.get_asset_check_evaluations() if e.check_name == "rois_suite")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["errors"].value[0]["expectation"] == "area ratios inside the label's range"
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert {"raw", "normalized", "rois"} <= materialized and not materialized & {"context", "descriptions", "triplets"}  # everything downstream of rois waits
    path.write_text(tiny_sources.read_text() + "    quality: {severity: {outlier: fatal}}\n")
    from medtrinity_core.errors import SourcesFileError

    with pytest.raises(SourcesFileError, match=r"quality\.severity\.outlier: 'fatal' is not one of error, warn"):
        load_sources(path)
