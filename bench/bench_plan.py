"""bench-plan: planning a large source, and one raw partition of it, at two source sizes.

A synthetic `image_masks` source of image/mask pairs (a tenth of its files DICOM images, the rest PNG
images and masks) in shards of 500 items: planned once (discovery, pairing, one Parquet file per
shard), then the raw stage of one shard. The raw partition reads only its own shard's plan file, so its
time must not grow with the source: the floor is the same shard's raw stage in the 10,000-file source,
and the ratio (its time there over its time in the 100,000-file source) must stay at or above 0.8."""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import finish, image_masks_sources, peak_rss_mb, table

SIZES = (10_000, 100_000)
SHARD = 500
REPEATS = 3


def dicom_bytes() -> bytes:
    """One small CT slice written by pydicom (raw only hashes it; every file gets its own UID)."""
    import numpy as np
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows = ds.Columns = 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.zeros((16, 16), np.int16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def build_source(root: Path, files: int) -> Path:
    """files/2 image/mask pairs; a tenth of all files are DICOM images."""
    pairs, dicom = files // 2, files // 10
    png, dcm = b"\x89PNG\r\n\x1a\n planning does not decode", dicom_bytes()
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    for i in range(pairs):
        ext = "dcm" if i < dicom else "png"
        (root / "data" / "images" / f"case{i:06d}.{ext}").write_bytes(dcm + i.to_bytes(4, "little") if ext == "dcm" else png + i.to_bytes(4, "little"))
        (root / "data" / "masks" / f"case{i:06d}.png").write_bytes(png)
    sources = image_masks_sources(root / "sources.yaml", "bench-plan", "ct", "data", r"images/(?P<id>[^/]+)\.(png|dcm)", "lesion", SHARD)
    return sources


def measure(files: int) -> dict:
    from medtrinity_core.config import load_sources
    from medtrinity_core.pipeline import run_one
    from medtrinity_core.sources.shards import update_plan
    from medtrinity_core.storage import Workdir

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = load_sources(build_source(tmp, files)).sources[0]
        wd = Workdir.at(tmp / "wd")
        start = time.perf_counter()
        plan = update_plan(wd, src)
        plan_s = time.perf_counter() - start
        shard = sorted(plan)[len(plan) // 2]
        raw_times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            result = run_one("raw", src, shard, wd, {})  # the raw stage through the runner, as its asset runs it
            raw_times.append(time.perf_counter() - start)
        df, q = result.rows, result.rejected
        assert df.height == SHARD and q.height == 0, (df.height, q.height)
        dicom = df.filter(df["format"] == "dicom").height
    return {"files": files, "shards": len(plan), "plan_s": plan_s, "raw_s": min(raw_times), "dicom_in_shard": dicom}


def main() -> None:
    results = [measure(n) for n in SIZES]
    small, large = results
    print(f"bench-plan: a synthetic image_masks source, a tenth of its files DICOM, shards of {SHARD} items")
    rows = []
    for r in results:
        rows += [
            (f"{r['files']:>7,} files: planning ({r['shards']} shards)", f"{r['plan_s']:.2f} s ({r['files'] / r['plan_s']:,.0f} files/s)"),
            (f"{r['files']:>7,} files: one raw partition ({SHARD} items, {2 * SHARD} files)", f"{r['raw_s']:.3f} s (best of {REPEATS})"),
        ]
    ratio = small["raw_s"] / large["raw_s"]
    rows.append(("raw partition, 10k-file source over 100k-file source", f"{ratio:.2f} (target >= 0.8: it does not grow with the source)"))
    table(rows)
    rss = peak_rss_mb()
    finish("plan", SHARD, SHARD / large["raw_s"], SHARD / small["raw_s"], ((rss, rss), (rss, rss)),
           files=large["files"], plan_seconds_small=round(small["plan_s"], 2), plan_seconds_large=round(large["plan_s"], 2),
           raw_seconds_small=round(small["raw_s"], 4), raw_seconds_large=round(large["raw_s"], 4), shards_large=large["shards"])


if __name__ == "__main__":
    main()
