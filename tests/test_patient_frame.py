"""Patient-frame words measured from the body, not from thirds of the image: a body placed off-centre
in a wide field of view, cut on axial, coronal and sagittal planes; the same volume stored with a
flipped direction matrix says the same; 2D sources oriented by convention; each label pair once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import SimpleITK as sitk
from PIL import Image

from medtrinity_core.describe.facts import image_facts, relations_of
from medtrinity_core.describe.grounded import GroundedGenerator
from medtrinity_core.imaging.body import body_box
from medtrinity_core.roi.extract import extract_rois
from medtrinity_core.roi.facts import location_phrase
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

from .conftest import through_normalized

# (z, y, x) on an LPS grid of 24 x 96 x 128 one-millimetre voxels: x runs to the patient's left, y to
# posterior. The body spans x 10-69 (centre 40, a third of the way across) and y 20-59 (centre 40).
ORGANS = {
    1: ("right organ", (slice(8, 16), slice(36, 44), slice(18, 26))),
    2: ("central organ", (slice(8, 16), slice(36, 44), slice(37, 43))),
    3: ("left organ", (slice(8, 16), slice(36, 44), slice(54, 62))),
    4: ("anterior organ", (slice(8, 16), slice(22, 28), slice(37, 43))),
    5: ("posterior organ", (slice(8, 16), slice(52, 58), slice(37, 43))),
}
EXPECTED = {
    "axial": {"right organ": "patient's right", "central organ": "midline", "left organ": "patient's left",
              "anterior organ": "anterior, midline", "posterior organ": "posterior, midline"},
    "coronal": {"right organ": "patient's right", "central organ": "midline", "left organ": "patient's left",
                "anterior organ": "midline", "posterior organ": "midline"},
    "sagittal": {"right organ": "central", "central organ": "central", "left organ": "central",
                 "anterior organ": "anterior", "posterior organ": "posterior"},
}


def write_volume(folder: Path, flip_x: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    values = np.full((24, 96, 128), -1000.0, np.float32)
    values[:, 20:60, 10:70] = 40.0
    labels = np.zeros(values.shape, np.uint8)
    for value, (_, where) in ORGANS.items():
        labels[where] = value
        values[where] = 60.0
    for name, array in (("vol.mha", values), ("lab.mha", labels)):
        image = sitk.GetImageFromArray(array[:, :, ::-1] if flip_x else array)
        if flip_x:  # the same physical volume, stored with its x axis reversed
            image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
            image.SetOrigin((127.0, 0.0, 0.0))
        sitk.WriteImage(image, str(folder / name))


def source(root: Path) -> SourceConfig:
    return SourceConfig(name="wide", modality="ct", license="LicenseRef-test", root=root, layout="volume_labels", images=r"vol\.mha",
                        labels=r"lab\.mha", label_map=tuple((v, n) for v, (n, _) in ORGANS.items()), negatives_per_volume=0,
                        slice_axes=("axial", "coronal", "sagittal"))


def rois_of(root: Path, wd: Workdir) -> tuple[pl.DataFrame, pl.DataFrame]:
    src = source(root)
    _, _, _, images, q = through_normalized(src, wd)
    assert q.height == 0
    rois, rq = extract_rois(src, images.iter_rows(named=True), wd)
    assert rq.height == 0
    return images, rois


def test_sides_are_measured_from_the_body_on_axial_coronal_and_sagittal_planes(tmp_path):
    write_volume(tmp_path / "vol")
    images, rois = rois_of(tmp_path / "vol", Workdir.at(tmp_path / "wd"))
    axes = dict(zip(images["image_id"], images["slice_axis"]))
    seen = set()
    for roi in rois.iter_rows(named=True):
        axis = axes[roi["image_id"]]
        assert roi["location"] == EXPECTED[axis][roi["label"]], (axis, roi["label"], roi["location"])
        seen.add((axis, roi["label"]))
    assert len(seen) == 15
    relations = {(axes[r["image_id"]], r["label"], rel["other_label"]): rel["relation"] for r in rois.iter_rows(named=True) for rel in r["relations"]}
    assert relations[("axial", "right organ", "left organ")] == "to the patient's right of"
    assert relations[("sagittal", "anterior organ", "posterior organ")] == "anterior to"
    assert relations[("coronal", "left organ", "central organ")] == "to the patient's left of"
    body = images.filter(pl.col("slice_axis") == "axial").row(0, named=True)["body"]
    assert body == {"x0": 10.0, "y0": 20.0, "x1": 70.0, "y1": 60.0, "cx": 40.0, "cy": 40.0}


def test_a_volume_stored_with_a_flipped_direction_matrix_gives_byte_identical_text(tmp_path):
    texts = []
    for flip in (False, True):
        wd = Workdir.at(tmp_path / f"wd{flip}")
        write_volume(tmp_path / f"vol{flip}", flip_x=flip)
        images, rois = rois_of(tmp_path / f"vol{flip}", wd)
        by_image = {i: rois.filter(pl.col("image_id") == i).to_dicts() for i in images["image_id"]}
        src = source(tmp_path / f"vol{flip}")
        texts.append([(r["slice_axis"], r["slice_index"], GroundedGenerator().generate([(image_facts(src, r, by_image[r["image_id"]]), None)])[0]["text"])
                      for r in images.sort(["slice_axis", "slice_index"]).iter_rows(named=True)])
    assert texts[0] == texts[1] and len(texts[0]) > 20


def test_the_body_is_found_from_values_before_windowing():
    values = np.full((60, 100), -1000.0)
    values[10:50, 5:45] = -100.0  # fat: black in a narrow bone window, still body
    assert body_box(values, "ct") == (5.0, 10.0, 45.0, 50.0)
    pet = np.zeros((60, 100))
    pet[10:50, 5:45] = 1.0
    pet[20:24, 20:24] = 25.0  # a hot lesion does not shrink the body to itself
    assert body_box(pet, "pet") == (5.0, 10.0, 45.0, 50.0)


def test_a_region_spanning_the_body_centre_keeps_its_side_and_says_it_crosses():
    body = {"x0": 0.0, "y0": 0.0, "x1": 100.0, "y1": 100.0, "cx": 50.0, "cy": 50.0}
    assert location_phrase(35, 50, 300, 100, "R", "A", body, (20, 55)) == "patient's right, extending across the midline"
    assert location_phrase(35, 50, 300, 100, "R", "A", body, (20, 45)) == "patient's right"
    assert location_phrase(45, 50, 300, 100, "R", "A", body, (40, 55), band=0.1) == "midline"
    assert location_phrase(45, 50, 300, 100, "R", "A", body, (40, 55), band=0.02) == "patient's right, extending across the midline"


@pytest.mark.parametrize(("orientation", "expected"), [("chest_pa", ["patient's right", "patient's left"]), (None, ["left part of the image", "centre of the image"])])
def test_2d_sources_oriented_by_convention_get_patient_terms(tmp_path, orientation, expected):
    root = tmp_path / "cxr"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pixels = np.zeros((90, 240), np.uint8)
    pixels[:, 10:130] = 150  # the chest fills the left half of a wide film: its centre is x = 70
    Image.fromarray(pixels).save(root / "images" / "a.png")
    for name, cols in (("right", slice(25, 40)), ("left", slice(95, 110))):
        mask = np.zeros((90, 240), np.uint8)
        mask[38:53, cols] = 255
        Image.fromarray(mask).save(root / "masks" / f"a_{name}.png")
    from medtrinity_core.sources.schema import MaskSpec

    src = SourceConfig(name="cxr", modality="xray", license="LicenseRef-test", root=root, layout="image_masks", images=r"images/(?P<id>a)\.png",
                       masks=(MaskSpec(r"masks/{id}_(?P<label>right|left)\.png"),), orientation=orientation)
    _, _, _, images, _ = through_normalized(src, Workdir.at(tmp_path / "wd"))
    rois, _ = extract_rois(src, images.iter_rows(named=True), Workdir.at(tmp_path / "wd"))
    by_label = dict(zip(rois["label"], rois["location"]))
    assert [by_label["right"], by_label["left"]] == expected


def test_each_pair_of_labels_is_stated_once():
    def roi(roi_id, label, area, others):
        return {"roi_id": roi_id, "label": label, "area_px": area, "relations": [
            {"other_roi_id": o, "other_label": lab, "relation": "above", "distance_pct": 10.0, "distance_mm": None} for o, lab in others]}

    rois = [
        roi("liver", "liver", 900, [("s1", "spine"), ("s2", "spine")]),
        roi("s1", "spine", 100, [("liver", "liver"), ("s2", "spine")]),
        roi("s2", "spine", 90, [("liver", "liver"), ("s1", "spine")]),
    ]
    relations = relations_of(rois)
    assert [(r.subject, r.other) for r in relations] == [("liver", "spine"), ("spine", "spine")]  # liver-spine once, spine-spine once
