"""`make bench-experts`: items per second for the pipeline's readers of precomputed expert outputs against a floor.

Corpus (written by `tests/expert_outputs_factory.py`, exactly as the tools write them, into a temporary folder;
item counts in ITEMS): TotalSegmentator case folders of 6 structures (one empty, as the tool writes a class it
does not find) and `--ml` multilabel files, on a 96x96x48 CT volume (one item: one case); Cellpose
`_cp_masks.png` and `_seg.npy` of about 110 cells on 512x512; HoVer-Net JSON of 300 nuclei on 512x512 (with
PanNuke's `type_info.json`); one CheXmask `.csv.gz` of 500 rows at 256x256 (one item: one image's row);
label_map PNGs (3 classes, 512x512).

Timed: `expert_layer` (3D; the image is read beforehand, outside the timing) and `read_output` (2D) per item.
The floor reads the same files by the plainest means: nibabel `np.asanyarray(nib.load(p).dataobj)` per NIfTI
file; `np.asarray(Image.open(p))` per PNG; `np.load(p, allow_pickle=True).item()["masks"]` per `_seg.npy`;
`json.load` and `skimage.draw.polygon` per nucleus; a polars read of the CSV and CheXmask's own run-length
decode (`get_mask_from_RLE`: one slice assignment per run) of each row's three structures. The CheXmask CSV
is read once per pass by both (the pipeline's table cache is cleared before each pass). Both are timed in
this process, on the same files, after one warm-up pass each over the first few items. Overall items per
second: all items over all seconds; each format's figures are in the table and under `formats`. Peak memory:
fresh processes reading 10% and all of the corpus.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import entry, finish, peak_in_subprocess, peak_rss_mb, table

from medtrinity_core.imaging import expert_volumes
from medtrinity_core.imaging.readers import read_volumes
from medtrinity_core.roi import precomputed
from medtrinity_core.sources.schema import PrecomputedExpert
from tests.expert_outputs_factory import (
    cellpose_png,
    cellpose_seg_npy,
    chexmask_csv,
    hovernet_json,
    nucleus,
    ras_affine,
    totalsegmentator_folder,
    totalsegmentator_multilabel,
    type_info,
    write_nifti,
)

ITEMS = {"totalsegmentator": 40, "totalsegmentator --ml": 80, "cellpose png": 600, "cellpose _seg.npy": 600, "hovernet json": 120, "chexmask": 500, "label_map png": 600}
SMALL = 0.1  # the small memory point: this share of each format's items
VOLUME = (96, 96, 48)
STRUCTURES = ("liver", "spleen", "kidney_left", "kidney_right", "aorta", "pancreas")
SIDE = 512
CXR = (256, 256)
MAP_LABELS = ((1, "liver"), (2, "kidney"), (3, "tumor"))


# --- corpus -------------------------------------------------------------------------------------------------

def ct_structures() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    ct = np.full(VOLUME, -100.0, np.float32)
    i, j, k = np.ogrid[: VOLUME[0], : VOLUME[1], : VOLUME[2]]
    centres = {"liver": (25, 45, 24, 16), "spleen": (72, 60, 26, 9), "kidney_left": (72, 40, 18, 8), "kidney_right": (24, 40, 18, 8), "aorta": (50, 55, 24, 5)}
    structures = {}
    for name in STRUCTURES:
        mask = np.zeros(VOLUME, np.uint8)
        if name in centres:  # pancreas: not in view, an all-zero file
            ci, cj, ck, r = centres[name]
            mask[((i - ci) ** 2 + (j - cj) ** 2 + (k - ck) ** 2 * 4) <= r * r] = 1
            ct[mask == 1] = 40.0
        structures[name] = mask
    return ct, structures


def cell_masks(rng: np.random.Generator) -> np.ndarray:
    masks = np.zeros((SIDE, SIDE), np.uint16)
    yy, xx = np.ogrid[:SIDE, :SIDE]
    cell = 0
    for cy in range(20, SIDE - 20, 40):
        for cx in range(20, SIDE - 20, 40):
            if rng.random() < 0.25:
                continue
            cell += 1
            r = rng.integers(8, 17)
            masks[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = cell
    return masks


def nuclei(rng: np.random.Generator, count: int = 300) -> dict[int, dict]:
    out = {}
    for n in range(count):
        row, col = divmod(n, 20)
        out[n + 1] = nucleus(16 + col * 25 + rng.uniform(-2, 2), 16 + row * 32 + rng.uniform(-2, 2), rng.uniform(5, 10), int(rng.integers(0, 6)), float(rng.uniform(0.3, 1.0)))
    return out


def lungs(rng: np.random.Generator) -> dict[str, np.ndarray]:
    h, w = CXR
    yy, xx = np.ogrid[:h, :w]
    dy, dx = rng.integers(-8, 9, size=2)

    def ellipse(cy, cx, ry, rx):
        return ((yy - cy - dy) / ry) ** 2 + ((xx - cx - dx) / rx) ** 2 <= 1.0

    return {"right": ellipse(125, 72, 85, 45), "left": ellipse(125, 184, 85, 45), "heart": ellipse(160, 140, 45, 40)}


def repeated(paths: list[Path], write, distinct: int = 4) -> list[Path]:
    """The first `distinct` files written by `write(n, path)` (the factory), the rest byte-for-byte copies of them."""
    for n, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        if n < distinct:
            write(n, path)
        elif path.suffix:
            shutil.copyfile(paths[n % distinct], path)
        else:
            shutil.copytree(paths[n % distinct], path)
    return paths


def corpus(root: Path, share: float) -> dict[str, tuple[PrecomputedExpert, list[dict]]]:
    """format -> (expert, items); each item has what both readers need. The 3D cases share one CT image
    (read once here, outside the timing: `expert_layer` takes it read)."""
    rng = np.random.default_rng(0)
    counts = {fmt: max(4, round(n * share)) for fmt, n in ITEMS.items()}
    affine = ras_affine(spacing=(1.0, 1.0, 2.0), origin=(-48.0, -48.0, -48.0))
    ct, structures = ct_structures()
    image = read_volumes(write_nifti(root / "ct.nii.gz", ct, affine), "all", 10**9)[0][1]
    work = {}

    folders = repeated([root / "ts" / f"case{n:03d}" for n in range(counts["totalsegmentator"])], lambda n, p: totalsegmentator_folder(p, structures, affine))
    cases = []
    for n, folder in enumerate(folders):
        files = [(f"ts/{folder.name}/{s}.nii.gz", s) for s in STRUCTURES]
        cases.append({"sitk": image, "files": [root / f for f, _ in files],
                      "raw": {"public": f"ts/case{n:03d}_ct.nii.gz", "annotations": [{"kind": "expert_output", "relpath": f, "public": f, "label": s} for f, s in files]}})
    work["totalsegmentator"] = (PrecomputedExpert(kind="precomputed", format="totalsegmentator", pattern="{case}/"), cases)

    outputs = repeated([root / "ml" / f"case{n:03d}_seg.nii.gz" for n in range(counts["totalsegmentator --ml"])], lambda n, p: totalsegmentator_multilabel(p, structures, affine))
    cases = []
    for n, output in enumerate(outputs):
        rel = f"ml/{output.name}"
        cases.append({"sitk": image, "files": [output],
                      "raw": {"public": f"ml/case{n:03d}_ct.nii.gz", "annotations": [{"kind": "expert_output", "relpath": rel, "public": rel, "label": None}]}})
    work["totalsegmentator --ml"] = (PrecomputedExpert(kind="precomputed", format="totalsegmentator", pattern="{case}_seg.nii.gz"), cases)

    masks = [cell_masks(rng) for _ in range(4)]
    cellpose = PrecomputedExpert(kind="precomputed", format="cellpose", pattern="{stem}_cp_masks.png", label="nucleus")
    paths = repeated([root / "cp" / f"tile{n:04d}_cp_masks.png" for n in range(counts["cellpose png"])], lambda n, p: cellpose_png(p, masks[n]))
    work["cellpose png"] = (cellpose, [{"path": p, "image": f"cp/tile{n:04d}.png", "shape": (SIDE, SIDE)} for n, p in enumerate(paths)])
    paths = repeated([root / "cp" / f"tile{n:04d}_seg.npy" for n in range(counts["cellpose _seg.npy"])], lambda n, p: cellpose_seg_npy(p, masks[n], f"tile{n:04d}.png"))
    work["cellpose _seg.npy"] = (cellpose.model_copy(update={"pattern": "{stem}_seg.npy"}), [{"path": p, "image": f"cp/tile{n:04d}.png", "shape": (SIDE, SIDE)} for n, p in enumerate(paths)])

    (root / "hv").mkdir()
    type_info(root / "hv" / "type_info.json")
    paths = repeated([root / "hv" / "json" / f"tile{n:04d}.json" for n in range(counts["hovernet json"])], lambda n, p: hovernet_json(p, nuclei(rng)))
    work["hovernet json"] = (PrecomputedExpert(kind="precomputed", format="hovernet", pattern="json/{stem}.json", type_info="hv/type_info.json"),
                             [{"path": p, "image": f"hv/tile{n:04d}.png", "shape": (SIDE, SIDE)} for n, p in enumerate(paths)])

    ids = [f"cxr{n:04d}.png" for n in range(counts["chexmask"])]
    (root / "chexmask").mkdir()
    rows = ({"id": i, "dice_mean": round(float(rng.uniform(0.4, 0.95)), 3), **lungs(rng)} for i in ids)  # one row's masks at a time
    table_path = chexmask_csv(root / "chexmask" / "dataset.csv.gz", rows)
    items = [{"path": table_path, "image": f"images/{i}", "id": i, "shape": CXR} for i in ids]
    work["chexmask"] = (PrecomputedExpert(kind="precomputed", format="chexmask", file="chexmask/dataset.csv.gz"), items)

    def label_png(n: int, path: Path) -> None:
        m = np.zeros((SIDE, SIDE), np.uint8)
        for value, _name in MAP_LABELS:
            y, x = rng.integers(0, SIDE - 160, size=2)
            m[y : y + 150, x : x + 150] = value
        Image.fromarray(m).save(path)

    paths = repeated([root / "maps" / f"img{n:04d}_label.png" for n in range(counts["label_map png"])], label_png)
    work["label_map png"] = (PrecomputedExpert(kind="precomputed", format="label_map", pattern="{stem}_label.png", labels=MAP_LABELS),
                             [{"path": p, "image": f"maps/img{n:04d}.png", "shape": (SIDE, SIDE)} for n, p in enumerate(paths)])
    return work


# --- the pipeline's readers, and the floor ------------------------------------------------------------------

def pipeline(fmt: str, expert: PrecomputedExpert, items: list[dict], root: Path) -> int:
    """Regions found (3D: named labels present; 2D: regions over all outputs)."""
    found = 0
    if expert.format == "totalsegmentator":
        for case in items:
            layer = expert_volumes.expert_layer(expert, case["raw"], case["sitk"], root, 10**9)
            found += len(np.unique(layer.labels[layer.labels != 0]))
        return found
    precomputed._chexmask_table.cache_clear()  # noqa: SLF001 - each pass reads the CSV once, as the floor does
    for item in items:
        public = item["path"].relative_to(root).as_posix()
        for output in precomputed.read_output(expert, item["path"], public, root, item["image"], item["shape"]):
            found += len(output.regions)
    return found


def floor_rle(rle: str, size: int) -> np.ndarray:
    """CheXmask's own `get_mask_from_RLE`: 1-based starts, one slice per run."""
    runs = np.array(rle.split(), dtype=np.int64)
    flat = np.zeros(size, np.uint8)
    for start, length in zip(runs[0::2].tolist(), runs[1::2].tolist()):
        flat[start - 1 : start - 1 + length] = 255
    return flat


def floor(fmt: str, expert: PrecomputedExpert, items: list[dict], root: Path) -> int:
    import nibabel as nib
    from skimage.draw import polygon

    found = 0
    if expert.format == "totalsegmentator":
        for case in items:
            for path in case["files"]:
                values = np.asanyarray(nib.load(str(path)).dataobj)
                found += len(np.unique(values[values != 0]))
        return found
    if expert.format == "chexmask":
        import polars as pl

        table = pl.read_csv(items[0]["path"], schema_overrides={"Image ID": pl.String}, infer_schema_length=0)
        rows = {r["Image ID"]: r for r in table.iter_rows(named=True)}
        for item in items:
            row = rows[item["id"]]
            h, w = int(row["Height"]), int(row["Width"])
            for column in ("Left Lung", "Right Lung", "Heart"):
                _ = floor_rle(row[column], h * w).reshape(h, w)
                found += 1
        return found
    for item in items:
        path = item["path"]
        if fmt == "cellpose _seg.npy":
            masks = np.load(path, allow_pickle=True).item()["masks"]
            found += int(masks.max())
        elif expert.format == "hovernet":
            with open(path) as fh:
                data = json.load(fh)
            labels = np.zeros(item["shape"], np.int32)
            for key, nuc in data["nuc"].items():
                contour = np.asarray(nuc["contour"])
                rr, cc = polygon(contour[:, 1], contour[:, 0], item["shape"])
                labels[rr, cc] = int(key)
                found += nuc["type"] != 0
        else:
            values = np.asarray(Image.open(path))
            found += int(values.max()) if expert.format == "cellpose" else len(np.unique(values[values != 0]))
    return found


def timed(fn, fmt: str, expert: PrecomputedExpert, items: list[dict], root: Path) -> tuple[float, int]:
    fn(fmt, expert, items[:3], root)  # warm-up: imports, lazy init
    start = time.perf_counter()
    result = fn(fmt, expert, items, root)
    return time.perf_counter() - start, result


def memory_point(percent: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = corpus(Path(tmp), percent / 100)
        before = peak_rss_mb()
        for fmt, (expert, items) in work.items():
            pipeline(fmt, expert, items, Path(tmp))
    print(before, peak_rss_mb())


def main() -> None:
    # The memory points first: a child process starts with its parent's peak RSS (Linux keeps ru_maxrss across
    # fork and exec), so they run while this process holds only its imports.
    memory = peak_in_subprocess(__file__, "--memory", str(round(SMALL * 100))), peak_in_subprocess(__file__, "--memory", "100")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        work = corpus(root, 1.0)
        setup = time.perf_counter() - start
        for fmt, (expert, items) in work.items():
            t_pipe, found = timed(pipeline, fmt, expert, items, root)
            t_floor, floor_found = timed(floor, fmt, expert, items, root)
            results[fmt] = (len(items), t_pipe, found, t_floor, floor_found)
    (base_small, small), (base_large, large) = memory
    items = sum(r[0] for r in results.values())
    t_pipe, t_floor = sum(r[1] for r in results.values()), sum(r[3] for r in results.values())
    rate, floor_rate = items / t_pipe, items / t_floor
    print(f"bench-experts: {len(results)} formats, {items} items (corpus written in {setup:.1f} s)")
    rows = []
    for fmt, (n, tp, found, tf, floor_found) in results.items():
        rows.append((f"{fmt} ({n} items)", f"{n / tp:8.1f} items/s ({tp:5.2f} s, {found} regions)  floor {n / tf:8.1f} items/s ({tf:5.2f} s, {floor_found})  ratio {tf / tp:6.3f}"))
    rows += [
        ("all formats", f"{rate:8.1f} items/s ({t_pipe:5.2f} s)  floor {floor_rate:8.1f} items/s ({t_floor:5.2f} s)  ratio {rate / floor_rate:6.3f}"),
        (f"peak RSS, {round(SMALL * 100)}% / all items", f"{small:.0f} MB / {large:.0f} MB"),
        ("  of which imports and set-up", f"{base_small:.0f} MB / {base_large:.0f} MB"),
    ]
    table(rows)
    per_format = {fmt: {"items": n, "items_per_s": round(n / tp, 2), "floor_items_per_s": round(n / tf, 2), "ratio_to_floor": round(tf / tp, 3)}
                  for fmt, (n, tp, _, tf, _) in results.items()}
    finish("experts", items, rate, floor_rate, memory, formats=per_format)


if __name__ == "__main__":
    entry(main, memory_point)
