"""Exact and near duplicates within and across sources, and benchmark decontamination."""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from medtrinity_core.imaging.dedup import (
    deduplicate,
    hamming,
    perceptual_hash,
    unique_images,
)
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir


def texture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((96, 128)), 6)
    return ((smooth - smooth.min()) / np.ptp(smooth) * 255).astype(np.uint8)


def folder(root, files: dict) -> SourceConfig:
    root.mkdir(parents=True)
    for name, (pixels, kw) in files.items():
        Image.fromarray(pixels).save(root / name, **kw)
    return SourceConfig(name=root.name, modality="microscopy", license="CC0-1.0", root=root, layout="labeled_images", images=r".+\.(png|jpg)", label="cells")


def normalized(src, wd):
    items, _ = discover(src)
    raw, _ = inventory(src, items)
    return normalize(src, raw.iter_rows(named=True), wd)[0]


def test_perceptual_hash_is_close_for_copies_and_far_for_others():
    a = texture(1)
    brighter = np.clip(a.astype(int) + 6, 0, 255).astype(np.uint8)
    smaller = np.asarray(Image.fromarray(a).resize((64, 48)))
    ha, hb, hs, hc = (int(perceptual_hash(x), 16) for x in (a, brighter, smaller, texture(2)))
    far = np.array([hb, hs, hc], dtype=np.uint64)
    distances = hamming(far, ha).tolist()
    assert distances[0] <= 4 and distances[1] <= 6 and distances[2] > 16


def test_exact_near_and_cross_source_duplicates_are_marked_once(tmp_path):
    a, b = texture(1), texture(2)
    first = folder(tmp_path / "first", {"a.png": (a, {}), "a_copy.png": (a, {}), "a_near.jpg": (a, {"quality": 85}), "b.png": (b, {})})
    wd = Workdir.at(tmp_path / "wd")
    df, counts = deduplicate(normalized(first, wd), wd, "first", "base-0000", near_distance=6, benchmark_file=None)
    kinds = dict(zip(df["relpath"].to_list(), df["duplicate_kind"].to_list()))
    assert kinds == {"a.png": None, "a_copy.png": "exact", "a_near.jpg": "near", "b.png": None}
    a_id = df.filter(df["relpath"] == "a.png")["image_id"][0]
    assert set(df.filter(df["duplicate_kind"].is_not_null())["duplicate_of"].to_list()) == {a_id}
    assert counts == {"exact": 1, "near": 1, "benchmark": 0}
    assert unique_images(df)["relpath"].to_list() == ["a.png", "b.png"]

    second = folder(tmp_path / "second", {"again.png": (a, {}), "c.png": (texture(3), {})})
    other, counts = deduplicate(normalized(second, wd), wd, "second", "base-0000", 6, None)
    assert dict(zip(other["relpath"].to_list(), other["duplicate_of"].to_list())) == {"again.png": a_id, "c.png": None}

    rerun, _ = deduplicate(normalized(first, wd), wd, "first", "base-0000", 6, None)
    assert rerun["duplicate_kind"].to_list() == df["duplicate_kind"].to_list()  # a re-run keeps its own decisions


def test_benchmark_images_are_excluded(tmp_path):
    a, b = texture(1), texture(2)
    src = folder(tmp_path / "src", {"a.png": (a, {}), "b.png": (b, {}), "b_small.png": (np.asarray(Image.fromarray(b).resize((64, 48))), {})})
    wd = Workdir.at(tmp_path / "wd")
    images = normalized(src, wd)
    b_row = images.filter(images["relpath"] == "b.png").row(0, named=True)
    hashes = tmp_path / "vqa-rad-test.txt"
    hashes.write_text(f"# benchmark test images\n{b_row['phash']}\n")
    df, counts = deduplicate(images, wd, "src", "base-0000", 6, hashes)
    assert dict(zip(df["relpath"].to_list(), df["duplicate_kind"].to_list())) == {"a.png": None, "b.png": "benchmark", "b_small.png": "benchmark"}
    assert counts["benchmark"] == 2
    hashes.write_text(f"{b_row['pixel_sha256']}\n")
    df, counts = deduplicate(images, wd, "src", "base-0000", 0, hashes)
    assert counts == {"exact": 0, "near": 0, "benchmark": 1}


def test_slices_of_one_volume_are_not_duplicates_of_each_other(tmp_path):
    import SimpleITK as sitk

    from medtrinity_core.imaging.dedup import deduplicate as dedup

    root = tmp_path / "vol"
    root.mkdir()
    volume = np.repeat(texture(4)[None].astype(np.float32), 6, axis=0)  # six identical slices
    labels = np.ones(volume.shape, np.uint8)
    for arr, name in ((volume, "c1_img.nii.gz"), (labels, "c1_lab.nii.gz")):
        sitk.WriteImage(sitk.GetImageFromArray(arr), str(root / name))
    src = SourceConfig(name="v", modality="mri", license="CC0-1.0", root=root, layout="volume_labels", images=r"(?P<c>c\d)_img\.nii\.gz",
                       labels=r"{c}_lab\.nii\.gz", label_map=((1, "tissue"),))
    wd = Workdir.at(tmp_path / "wd")
    df, counts = dedup(normalized(src, wd), wd, "v", "base-0000", 6, None)
    assert df.height == 6 and counts == {"exact": 0, "near": 0, "benchmark": 0}
