"""`make bench-normalize`: images per second for the normalized stage against a floor.

Corpus: the bundled examples' 2D images (PNG, RGBA PNG, JPEG, TIFF) copied to 500 files, plus 5 copies
of the bundled volumes with their label volumes. The floor does the same output work by the plainest
means: Pillow decode, resize to the same size, PNG encode at the same compression level; SimpleITK read
and min-max scaling of the same slices. Peak memory is measured in fresh processes at shard sizes 100
and 1,000: a streaming stage stays flat.
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import entry, finish, peak_in_subprocess, peak_rss_mb, table

from medtrinity_core.config import load_sources
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import PNG_COMPRESS_LEVEL, Workdir

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
IMAGES, VOLUMES = 500, 5
RASTER = (".png", ".jpg", ".tif")


def build_corpus(root: Path, images: int, volumes: int) -> list[SourceConfig]:
    sources = load_sources(EXAMPLES / "sources.yaml")
    samples = [s.root / i.relpath for s in sources.sources if s.layout in ("image_masks", "labeled_images") for i in discover(s)[0]]
    samples = [p for p in samples if p.suffix in RASTER]
    flat = root / "flat"
    flat.mkdir(parents=True)
    for n in range(images):
        src = samples[n % len(samples)]
        shutil.copy(src, flat / f"img_{n:05d}{src.suffix}")
    vols = root / "volumes"
    vols.mkdir()
    pet = sources.source("sts-pet")
    for n in range(volumes):
        shutil.copy(pet.root / "STS_002_PET_SUV_image.nii.gz", vols / f"v{n:02d}_image.nii.gz")
        shutil.copy(pet.root / "STS_002_PET_mask.nii.gz", vols / f"v{n:02d}_label.nii.gz")
    flat_src = SourceConfig(name="bench-2d", modality="histopathology", license="CC0-1.0", root=flat, layout="labeled_images",
                            images=r"img_\d+\.(png|jpg|tif)", label="bench")
    vol_src = pet.model_copy(update={"name": "bench-3d", "root": vols, "images": r"(?P<case>v\d+)_image\.nii\.gz", "labels": r"{case}_label\.nii\.gz"})
    return [flat_src, vol_src]


def raw_rows(src: SourceConfig) -> list[dict]:
    items, _ = discover(src)
    return list(inventory(src, items)[0].iter_rows(named=True))


def stage(wd: Workdir, work) -> tuple[int, list]:
    outputs = []
    for src, rows in work:
        df, _ = normalize(src, rows, wd)
        outputs.append(df)
    return sum(d.height for d in outputs), outputs


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buf.getvalue()


def floor(work, outputs) -> int:
    """Decode, resize to the stage's output size, encode; slices of volumes min-max scaled."""
    written = 0
    for (src, rows), out in zip(work, outputs):
        sizes = {(r["relpath"], r["slice_index"]): (r["width"], r["height"]) for r in out.iter_rows(named=True)}
        for row in rows:
            path = src.root / row["relpath"]
            if row["kind"] == "image2d":
                with Image.open(path) as img:
                    img = img.convert("RGB" if img.mode not in ("L", "I;16") else "L")
                    _png(np.asarray(img.resize(sizes[(row["relpath"], None)])))
                written += 1
                continue
            volume = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            labels = sitk.GetArrayFromImage(sitk.ReadImage(str(src.root / row["annotations"][0]["relpath"])))
            lo, hi = float(volume.min()), float(volume.max())
            for (rel, z), size in sizes.items():
                if rel != row["relpath"]:
                    continue
                plane = ((volume[z] - lo) / (hi - lo or 1) * 255).astype(np.uint8)
                _png(np.asarray(Image.fromarray(plane).resize(size)))
                _png((labels[z] > 0).astype(np.uint8) * 255)
                written += 1
    return written


def memory_point(images: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = [(s, raw_rows(s)) for s in build_corpus(Path(tmp) / "corpus", images, 0)[:1]]
        before = peak_rss_mb()
        stage(Workdir.at(Path(tmp) / "wd"), work)
    print(before, peak_rss_mb())


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = [(s, raw_rows(s)) for s in build_corpus(Path(tmp) / "corpus", IMAGES, VOLUMES)]
        items = sum(len(rows) for _, rows in work)
        stage(Workdir.at(Path(tmp) / "warm"), [(src, rows[:20]) for src, rows in work])  # warm-up: imports, lazy init
        start = time.perf_counter()
        images, outputs = stage(Workdir.at(Path(tmp) / "wd"), work)
        t_stage = time.perf_counter() - start
        floor(work, outputs)
        start = time.perf_counter()
        floor_images = floor(work, outputs)
        t_floor = time.perf_counter() - start
    (base_small, small), (base_large, large) = peak_in_subprocess(__file__, "--memory", "100"), peak_in_subprocess(__file__, "--memory", "1000")
    rate, floor_rate = images / t_stage, floor_images / t_floor
    print(f"bench-normalize: {items} items ({IMAGES} 2D files, {VOLUMES} volumes) -> {images} 2D images")
    table([
        ("normalized stage", f"{rate:8.1f} images/s  ({t_stage:.2f} s)"),
        ("floor (decode + resize + PNG)", f"{floor_rate:8.1f} images/s  ({t_floor:.2f} s)"),
        ("ratio to floor (target >= 0.7)", f"{rate / floor_rate:8.3f}"),
        ("peak RSS, shard of 100 / 1000", f"{small:.0f} MB / {large:.0f} MB  (growth {100 * (large / small - 1):.1f} %, target <= 20 %)"),
        ("  of which imports and set-up", f"{base_small:.0f} MB / {base_large:.0f} MB"),
    ])
    finish("normalize", items, rate, floor_rate, ((base_small, small), (base_large, large)))


if __name__ == "__main__":
    entry(main, memory_point)
