"""ROI sources beyond masks: boxes (COCO, YOLO, CSV), flagged proposals; shape words; previews."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.roi.components import components
from medtrinity_core.roi.extract import dataset_rois, extract_rois
from medtrinity_core.roi.facts import shape_facts
from medtrinity_core.roi.preview import overlay
from medtrinity_core.roi.proposals import propose
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import BoxSpec, SourceConfig
from medtrinity_core.storage import Workdir

from .test_roi import disc


def stage(src, wd):
    items, _ = discover(src)
    raw, q = inventory(src, items)
    norm, nq = normalize(src, raw.iter_rows(named=True), wd)
    rois, rq = extract_rois(src, norm.iter_rows(named=True), wd)
    return norm, rois, pl.concat([q, nq, rq])


def test_shape_words_from_measured_geometry():
    assert shape_facts(components(disc(100, 100, 50, 50, 30), 1, 0)[0])["margin"] == "well-circumscribed"
    bar = np.zeros((100, 100), bool)
    bar[45:55, 5:95] = True
    facts = shape_facts(components(bar, 1, 0)[0])
    assert facts["shape"] == "elongated" and abs(abs(facts["orientation_deg"]) - 90) < 1
    star = np.zeros((101, 101), bool)
    for angle in np.linspace(0, np.pi, 4, endpoint=False):
        t = np.linspace(-48, 48, 400)
        ys, xs = (50 + t * np.sin(angle)).astype(int), (50 + t * np.cos(angle)).astype(int)
        for dy in range(-2, 3):
            star[np.clip(ys + dy, 0, 100), xs] = True
    assert shape_facts(components(star, 1, 0)[0])["margin"] == "irregular"


@pytest.fixture()
def box_folder(tmp_path):
    root = tmp_path / "boxes"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.fromarray(np.full((100, 200), 90, np.uint8)).save(root / "images" / "a.png")
    return root


def test_coco_yolo_and_csv_boxes_become_roi_rows(box_folder, tmp_path):
    root = box_folder
    (root / "coco.json").write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.png", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "nodule"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [20, 10, 40, 30]}],
    }))
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    (root / "boxes.csv").write_text("image,label,x,y,w,h\nimages/a.png,mass,150,60,30,20\n")
    base = SourceConfig(name="b", modality="xray", license="CC0-1.0", root=root, layout="image_boxes", images=r"images/(?P<id>[^/]+)\.png", max_side=100)
    expected = {
        "coco": BoxSpec("coco", file="coco.json"),
        "yolo": BoxSpec("yolo", pattern=r"labels/{id}\.txt", classes=("opacity",)),
        "csv": BoxSpec("csv", file="boxes.csv", box_columns=("x", "y", "w", "h"), box_format="xywh"),
    }
    wd = Workdir.at(tmp_path / "wd")
    got = {}
    for name, spec in expected.items():
        norm, rois, q = stage(base.model_copy(update={"boxes": spec}), wd)
        assert q.height == 0 and norm["width"][0] == 100  # image halved: boxes follow
        got[name] = rois.select("label", "method", "x0", "y0", "x1", "y1").row(0)
    assert got["coco"] == ("nodule", "ground_truth_box", 10, 5, 30, 20)
    assert got["yolo"] == ("opacity", "ground_truth_box", 40, 15, 60, 35)
    assert got["csv"] == ("mass", "ground_truth_box", 75, 30, 90, 40)


def test_a_box_outside_its_image_is_quarantined(box_folder, tmp_path):
    (box_folder / "labels" / "a.txt").write_text("0 3.0 3.0 0.1 0.1\n")
    src = SourceConfig(name="b", modality="xray", license="CC0-1.0", root=box_folder, layout="image_boxes",
                       images=r"images/(?P<id>[^/]+)\.png", boxes=BoxSpec("yolo", pattern=r"labels/{id}\.txt", classes=("x",)))
    norm, _rois, q = stage(src, Workdir.at(tmp_path / "wd"))
    assert norm.height == 0 and q["reason"].to_list() == ["box_outside_image"]


def test_proposals_are_flagged_and_kept_out_of_the_dataset_unless_opted_in(tmp_path):
    root = tmp_path / "derm"
    root.mkdir()
    skin = np.zeros((120, 160, 3), np.uint8)
    skin[:] = (225, 180, 160)
    lesion = disc(120, 160, 60, 90, 25)
    skin[lesion] = (90, 50, 40)
    Image.fromarray(skin).save(root / "benign_1.png")
    src = SourceConfig(name="d", modality="dermoscopy", license="CC0-1.0", root=root, layout="labeled_images",
                       images=r"(?P<label>benign|malignant)_\d+\.png", proposals=True)
    mask, confidence = propose(skin, "dermoscopy")
    assert (mask & lesion).sum() / (mask | lesion).sum() > 0.9 and confidence > 0.8
    _, rois, q = stage(src, Workdir.at(tmp_path / "wd"))
    assert q.height == 0 and rois["method"].to_list() == ["proposal"] and rois["label"].to_list() == ["benign"]
    assert rois["confidence"][0] > 0.8 and rois["contrast"][0] == "darker"
    assert dataset_rois(rois, src).height == 0
    assert dataset_rois(rois, src.model_copy(update={"include_proposals": True})).height == 1
    _, none, _ = stage(src.model_copy(update={"proposals": False}), Workdir.at(tmp_path / "wd2"))
    assert none.height == 0


def test_radiology_proposals_find_hot_spots():
    pet = np.full((80, 80), 20.0)
    pet[30:40, 50:60] = 200.0
    mask, confidence = propose(pet.astype(np.uint8), "pet")
    assert mask[30:40, 50:60].all() and mask.sum() == 100 and confidence == 1.0


def test_ultrasound_proposals_find_a_dark_lesion_away_from_the_border():
    rng = np.random.default_rng(3)
    us = rng.normal(140, 25, (128, 128)).clip(0, 255)
    us[:, :8] = 0  # dark fan edge touching the border: not a lesion
    lesion = disc(128, 128, 70, 60, 15)
    us[lesion] = rng.normal(40, 10, lesion.sum()).clip(0, 255)
    mask, confidence = propose(us.astype(np.uint8), "ultrasound")
    assert (mask & lesion).sum() / (mask | lesion).sum() > 0.8 and not mask[:, :8].any() and confidence > 0.5


def test_overlay_draws_each_contour_in_its_label_colour():
    image = np.zeros((60, 60), np.uint8)
    from medtrinity_core.roi import rle

    m = np.zeros((60, 60), bool)
    m[20:40, 20:40] = True
    pixels = overlay(image, [{"label": "lesion", "rle_counts": rle.encode(m), "x0": 20, "y0": 20, "x1": 40, "y1": 40}])
    assert pixels.shape == (60, 60, 3)
    assert tuple(pixels[30, 20]) == (230, 25, 75)  # contour pixel
    assert tuple(pixels[30, 30]) == (0, 0, 0)  # inside untouched
