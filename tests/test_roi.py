"""ROIs: components, RLE, location, appearance, relations and the rois stage."""

from __future__ import annotations

import numpy as np
import pytest

from medtrinity_core.roi import rle
from medtrinity_core.roi.components import components
from medtrinity_core.roi.extract import extract_rois, patient_terms
from medtrinity_core.roi.facts import (
    appearance,
    colour_name,
    location_phrase,
    size_class,
)
from medtrinity_core.roi.relations import relation
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def comp_of(mask):
    return components(mask, 1, 0)[0]


def test_rle_matches_coco_column_major_convention_and_round_trips():
    mask = np.array([[0, 1], [1, 1]], bool)
    assert rle.encode(mask) == [1, 3]  # column-major: 0,1 | 1,1
    assert rle.encode(np.array([[1, 0], [0, 0]], bool)) == [0, 1, 3]
    rng = np.random.default_rng(0)
    random = rng.random((17, 23)) > 0.6
    assert np.array_equal(rle.decode(rle.encode(random), 17, 23), random)
    assert rle.encode(np.zeros((3, 4), bool)) == [12]
    full = np.zeros((40, 30), bool)
    full[5:20, 7:16] = random[:15, :9]
    assert rle.encode_crop(full[5:20, 7:16], 7, 5, 40, 30) == rle.encode(full)


def test_components_use_8_connectivity_and_a_minimum_area():
    mask = np.zeros((20, 20), bool)
    mask[2, 2] = mask[3, 3] = True  # diagonal neighbours: one component of 2 px
    mask[10:15, 10:16] = True  # 30 px
    found = components(mask, min_pixels=3, min_fraction=0.0)
    assert [(c.area, c.x0, c.y0, c.x1, c.y1) for c in found] == [(30, 10, 10, 16, 15)]
    assert [c.area for c in components(mask, min_pixels=1, min_fraction=0.0)] == [30, 2]
    assert components(mask, min_pixels=1, min_fraction=0.1) == []  # 30 px < 10 % of 400


def test_location_in_image_and_patient_terms():
    assert location_phrase(10, 10, 300, 300) == "upper left part of the image"
    assert location_phrase(150, 150, 300, 300) == "centre of the image"
    assert location_phrase(290, 150, 300, 300) == "right part of the image"
    # radiological view: image left is the patient's right, image top anterior
    assert location_phrase(250, 40, 300, 300, "R", "A") == "anterior, patient's left"
    assert location_phrase(40, 150, 300, 300, "R", "A") == "patient's right"
    assert patient_terms("left of", "R", "A") == "to the patient's right of"
    assert patient_terms("below", "R", "A") == "posterior to"
    assert patient_terms("left of", None, None) == "left of"


def test_bright_disc_in_upper_left_is_hyperdense_and_homogeneous():
    image = np.full((200, 200), 60, np.uint8)
    mask = disc(200, 200, 50, 50, 20)
    image[mask] = 180
    facts = appearance(image, comp_of(mask), "ct")
    assert facts["contrast"] == "hyperdense" and facts["texture"] == "homogeneous" and facts["colour"] is None
    assert facts["roi_mean"] == 180.0 and facts["ring_mean"] == 60.0
    noisy = image.copy()
    noisy[mask] = np.random.default_rng(1).integers(40, 250, mask.sum())
    assert appearance(noisy, comp_of(mask), "mri")["texture"] == "heterogeneous"
    dark = np.full((200, 200), 200, np.uint8)
    dark[mask] = 30
    assert appearance(dark, comp_of(mask), "ultrasound")["contrast"] == "hypoechoic"


def test_colour_names_from_hue_and_saturation():
    assert colour_name(np.array([200, 30, 30])) == "red"
    assert colour_name(np.array([120, 60, 160])) == "purple"
    assert colour_name(np.array([240, 240, 240])) == "white"
    assert colour_name(np.array([10, 10, 10])) == "dark"
    assert colour_name(np.array([230, 170, 170])) == "pink"


def test_size_classes():
    assert [size_class(x) for x in (0.005, 0.05, 0.5)] == ["small", "medium", "large"]


def test_relations_contains_touches_and_direction():
    h = w = 100
    big = components(disc(h, w, 50, 50, 30), 1, 0)[0]
    small = components(disc(h, w, 50, 50, 5), 1, 0)[0]
    assert relation(big, small, w, h) == ("contains", 0.0)
    assert relation(small, big, w, h)[0] == "inside"
    left = np.zeros((h, w), bool)
    left[40:60, 10:30] = True
    right = np.zeros((h, w), bool)
    right[40:60, 30:50] = True
    a, b = components(left, 1, 0)[0], components(right, 1, 0)[0]
    assert relation(a, b, w, h)[0] == "touches"
    far = np.zeros((h, w), bool)
    far[40:60, 70:90] = True
    kind, dist = relation(a, components(far, 1, 0)[0], w, h)
    assert kind == "left of" and dist == pytest.approx(100 * 60 / np.hypot(100, 100), abs=0.01)


def test_rois_stage_measures_each_component(tmp_path):
    wd = Workdir.at(tmp_path)
    image = np.full((100, 200), 50, np.uint8)
    lesion = disc(100, 200, 25, 40, 10)
    image[lesion] = 200
    organ = np.zeros((100, 200), bool)
    organ[5:60, 10:90] = True
    img_uri, _img_sha = wd.put_png(image)
    masks = []
    for label, m in (("lesion", lesion), ("organ", organ)):
        uri, sha = wd.put_png(m.astype(np.uint8) * 255)
        masks.append({"label": label, "uri": uri, "sha256": sha, "annotation": f"{label}.png"})
    row = {"image_id": "img-1", "item_id": "item-1", "relpath": "x.png", "image_uri": img_uri, "width": 200, "height": 100,
           "masks": masks, "boxes": [], "label_volumes": [{"label": "lesion", "volume_ml": 1.5}], "labels": [], "image_left": None, "image_top": None, "spacing_x": 0.5, "spacing_y": 0.5}
    src = SourceConfig(name="s", modality="ct", license="CC0-1.0", root=tmp_path, layout="image_masks", images=".*")
    df, q = extract_rois(src, [row], wd)
    assert q.height == 0 and df.height == 2
    les = df.filter(df["label"] == "lesion").row(0, named=True)
    assert (les["x0"], les["y0"], les["x1"], les["y1"]) == (30, 15, 51, 36)
    assert les["area_px"] == int(lesion.sum()) and les["area_mm2"] == pytest.approx(lesion.sum() * 0.25)
    assert les["location"] == "upper left part of the image" and les["contrast"] == "hyperdense"
    assert les["relations"][0]["relation"] == "inside" and les["relations"][0]["other_label"] == "organ"
    assert les["within"] == "organ" and les["within_location"] == "within the organ, centrally"
    assert les["shape"] == "round" and les["margin"] == "well-circumscribed" and les["volume_ml"] == 1.5 and les["label_count"] == 1
    assert les["method"] == "ground_truth_mask" and les["confidence"] is None
    assert np.array_equal(rle.decode(les["rle_counts"], 100, 200), lesion)
    again, _ = extract_rois(src, [row], wd)
    assert again["roi_id"].to_list() == df["roi_id"].to_list()


def test_bright_disc_in_the_patients_left_upper_image_and_a_flipped_direction_matrix(tmp_path):
    """The stated side follows the patient, not the array: the same disc stored with x reversed."""
    import SimpleITK as sitk

    from medtrinity_core.imaging.normalize import normalize
    from medtrinity_core.sources.discover import discover
    from medtrinity_core.sources.inventory import inventory

    volume = np.full((3, 90, 90), 60.0, np.float32)
    labels = np.zeros(volume.shape, np.uint8)
    labels[1] = disc(90, 90, 18, 70, 10)  # high column = patient's left in LPS; low row = anterior
    volume[labels == 1] = 220.0
    phrases = []
    for name, flip in (("lps", False), ("flipped", True)):
        root = tmp_path / name
        root.mkdir()
        for arr, suffix in ((volume, "img"), (labels, "lab")):
            img = sitk.GetImageFromArray(arr[:, :, ::-1].copy() if flip else arr)
            if flip:
                img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
                img.SetOrigin((89.0, 0, 0))
            sitk.WriteImage(img, str(root / f"c1_{suffix}.nii.gz"))
        src = SourceConfig(name=name, modality="ct", license="CC0-1.0", root=root, layout="volume_labels", images=r"(?P<c>c1)_img\.nii\.gz",
                           labels=r"{c}_lab\.nii\.gz", label_map=((1, "nodule"),), window="soft_tissue", negatives_per_volume=0)
        wd = Workdir.at(tmp_path / f"wd-{name}")
        items, _ = discover(src)
        norm, _ = normalize(src, inventory(src, items)[0].iter_rows(named=True), wd)
        rois, _ = extract_rois(src, norm.iter_rows(named=True), wd)
        roi = rois.row(0, named=True)
        assert (roi["shape"], roi["margin"], roi["contrast"], roi["texture"]) == ("round", "well-circumscribed", "hyperdense", "homogeneous")
        phrases.append(roi["location"])
    assert phrases == ["anterior, patient's left", "anterior, patient's left"]
