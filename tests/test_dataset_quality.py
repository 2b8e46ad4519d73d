"""Triplets, provenance for patient-identifying paths, and the quality checks."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from medtrinity_core.dataset.triplets import build_triplets
from medtrinity_core.ids import salted_hash
from medtrinity_core.quality import checks
from medtrinity_core.records import CONTEXT, DESCRIPTIONS, QUARANTINE, ROIS, frame
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

SRC = SourceConfig(name="hosp", modality="ct", license="LicenseRef-unstated", root=Path("/data/hosp"), layout="dicom", images=".*", body_region="abdomen")
IMAGE = {"image_id": "img-1", "item_id": "item-1", "relpath": "PATIENT_DOE_JOHN/ct.dcm", "source_sha256": "a" * 64, "slice_axis": None,
         "slice_index": None, "normalization": "{}", "image_uri": "images/aa/bb/x.png", "image_sha256": "b" * 64, "width": 10, "height": 10}
DESC = frame([{"image_id": "img-1", "source": "hosp", "text": "Modality: CT. Organ and tissue: the abdomen.", "facets": None, "cited_passages": ["p#0"],
               "generator": "grounded", "generator_model": None, "generator_params": "{}", "template_version": "grounded-v1", "faithfulness": 1.0,
               "completeness": 1.0, "scorer_version": "claims-v2"}], DESCRIPTIONS)
PLAIN = SourcePaths(None, "hosp", False)  # a source whose paths are not identifying: written as they are
REFS = [{"passage_id": pid, "finding": "liver tumor", "score": 0.9 - n / 10, "focus": "Liver Cancer", "corpus": "pubmed", "license": "CC0-1.0", "citation": "PubMed"}
        for n, pid in enumerate(["q#0", "p#0"])]
CTX = frame([{"image_id": "img-1", "source": "hosp", "coarse_caption": "CT image.", "queries": [{"finding": "liver tumor", "query": "q"}], "passages": REFS, "kb_version": "kb1"}], CONTEXT)


def test_patient_identifying_paths_are_salted_in_triplets_but_kept_in_lineage(tmp_path):
    src = SRC.model_copy(update={"paths_identify_patients": True})
    paths = SourcePaths(Workdir.at(tmp_path), src.name, True)
    image = {**IMAGE, "relpath": paths.public(IMAGE["relpath"])}  # manifests carry the public path
    triplets, lineage = build_triplets(src, "base-0000", [image], frame([], ROIS), CTX, DESC, paths)
    prov = triplets["provenance"][0]
    assert prov["source_relpath"] == "path-" + salted_hash("PATIENT_DOE_JOHN/ct.dcm", paths.salt) and prov["source_path_hashed"]
    assert "DOE" not in str(triplets.to_dicts())
    assert lineage["source_relpath"][0] == "PATIENT_DOE_JOHN/ct.dcm"
    other = SourcePaths(Workdir.at(tmp_path), src.name, True)
    other.salt = "another deployment"
    assert other.public("PATIENT_DOE_JOHN/ct.dcm") != prov["source_relpath"]


def test_provenance_and_exclusion_of_items_quarantined_downstream():
    triplets, _ = build_triplets(SRC, "base-0000", [IMAGE], frame([], ROIS), CTX, DESC, PLAIN)
    prov = triplets["provenance"][0]
    assert prov["source_relpath"] == "PATIENT_DOE_JOHN/ct.dcm" and not prov["source_path_hashed"]
    assert prov["kb_version"] == "kb1" and prov["package_version"] == "0.1.0"
    assert prov["passages"] == [REFS[1]]  # only what the description cites, with its corpus's licence and citation
    assert triplets["coarse_caption"][0] == "CT image."
    none, lineage = build_triplets(SRC, "base-0000", [IMAGE], frame([], ROIS), CTX, DESC, PLAIN, excluded_items={"item-1"})
    assert none.height == 0 and lineage.height == 0


def test_the_quarantine_share_check_compares_with_the_limit():
    assert checks.quarantine_share(1, 10, 0.25) == (True, {"quarantined": 1, "items": 10, "share": 0.1, "max_share": 0.25})
    assert not checks.quarantine_share(3, 10, 0.25)[0]


def test_a_contradicted_or_incomplete_description_stays_out_of_triplets_and_is_counted_under_its_reason():
    from medtrinity_core.accounting import account_images
    from medtrinity_core.dataset.triplets import exclusions

    side = [{"type": "side", "facet": "roi_location", "claim": "left", "fact": "patient's right", "span": [0, 4], "by": "rule"}]
    low = DESC.with_columns(pl.lit(0.5).alias("faithfulness"), pl.Series("contradictions", [side], dtype=DESCRIPTIONS["contradictions"]))
    triplets, lineage = build_triplets(SRC, "base-0000", [IMAGE], frame([], ROIS), CTX, low, PLAIN)
    assert triplets.height == 0 and lineage.height == 0 and exclusions(SRC, low) == {"contradiction": ["img-1"], "incomplete": []}
    lenient = SRC.model_copy(update={"faithfulness": SRC.faithfulness.model_copy(update={"min_faithfulness": 0.5})})
    kept, _ = build_triplets(lenient, "base-0000", [IMAGE], frame([], ROIS), CTX, low, PLAIN)
    assert kept["faithfulness"].to_list() == [0.5] and kept["contradictions"].to_list() == [side]  # at the threshold a row is kept, its contradictions carried
    sparse = DESC.with_columns(pl.lit(0.4).alias("completeness"))
    assert build_triplets(SRC, "base-0000", [IMAGE], frame([], ROIS), CTX, sparse, PLAIN)[0].height == 0 and exclusions(SRC, sparse)["incomplete"] == ["img-1"]
    normalized = pl.DataFrame({"image_id": ["img-1"], "item_id": ["item-1"], "duplicate_kind": [None]}, schema={"image_id": pl.String, "item_id": pl.String, "duplicate_kind": pl.String})
    counts = account_images("triplets", normalized, triplets["image_id"], frame([], QUARANTINE), exclusions(SRC, low))
    assert counts["excluded_contradiction"] == 1 and counts["excluded_incomplete"] == 0 and counts["images_out"] == 0
