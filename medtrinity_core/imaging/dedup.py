"""Duplicates and benchmark decontamination: exact (hash of decoded pixels) and near (64-bit DCT
perceptual hash within a Hamming distance), within a shard and against every shard already kept,
in any source. Each image is kept once; the others name the image they repeat. Slices of one volume
or series are never duplicates of each other: neighbouring slices look alike by nature."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from scipy.fft import dctn

from medtrinity_core.ids import sha256_bytes
from medtrinity_core.storage import Workdir, read_parquet, write_parquet

INDEX = {"image_id": pl.String, "item_id": pl.String, "pixel_sha256": pl.String, "phash": pl.String}


def pixel_hash(pixels: np.ndarray) -> str:
    """Of the decoded pixels and their shape: the same image in PNG, TIFF or DICOM hashes the same."""
    return sha256_bytes(str(pixels.shape).encode() + np.ascontiguousarray(pixels).tobytes())


def perceptual_hash(pixels: np.ndarray) -> str:
    """pHash: the signs of the 8x8 lowest frequencies of a 32x32 DCT against their median, as 16 hex digits."""
    grey = pixels if pixels.ndim == 2 else pixels.mean(axis=2).astype(np.uint8)
    small = np.asarray(Image.fromarray(grey).resize((32, 32), Image.Resampling.LANCZOS), dtype=np.float64)
    low = dctn(small, norm="ortho")[:8, :8]
    bits = (low > np.median(low)).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def hamming(a: np.ndarray, b: int) -> np.ndarray:
    """Bit differences between each of `a` (uint64) and `b`."""
    return np.unpackbits(np.bitwise_xor(a, np.uint64(b)).view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)


def read_benchmark_hashes(path: Path | None) -> tuple[set[str], np.ndarray]:
    """(pixel sha256s, perceptual hashes) from a file of one hash per line (# comments allowed)."""
    if path is None:
        return set(), np.zeros(0, np.uint64)
    exact, near = set(), []
    for line in path.read_text().splitlines():
        value = line.split("#", 1)[0].strip().lower()
        if len(value) == 64:
            exact.add(value)
        elif len(value) == 16:
            near.append(int(value, 16))
    return exact, np.array(near, dtype=np.uint64)


def index_path(workdir: Workdir, source: str, shard: str):
    return workdir.root / "dedup" / source / f"{shard}.parquet"


def _kept_elsewhere(workdir: Workdir, source: str, shard: str) -> pl.DataFrame:
    base = workdir.root / "dedup"
    own = index_path(workdir, source, shard)
    frames = [read_parquet(p) for p in sorted(base.glob("*/*.parquet"), key=str) if str(p) != str(own)] if base.exists() else []
    return pl.concat(frames) if frames else pl.DataFrame(schema=INDEX)


def deduplicate(images: pl.DataFrame, workdir: Workdir, source: str, shard: str, near_distance: int, benchmark_file: Path | None) -> tuple[pl.DataFrame, dict]:
    """Fill `duplicate_of` and `duplicate_kind`; index this shard's kept images; count what was found.
    Reading the index, deciding and writing this shard's part happen under one work-folder lock, so
    of two shards racing for one image the one committed first keeps it and the other is `exact`."""
    with workdir.lock("dedup"):
        return _deduplicate(images, workdir, source, shard, near_distance, benchmark_file)


def _deduplicate(images: pl.DataFrame, workdir: Workdir, source: str, shard: str, near_distance: int, benchmark_file: Path | None) -> tuple[pl.DataFrame, dict]:
    kept = _kept_elsewhere(workdir, source, shard)
    ids, items = kept["image_id"].to_list(), kept["item_id"].to_list()
    by_pixels: dict[str, list[int]] = {}
    for i, digest in enumerate(kept["pixel_sha256"].to_list()):
        by_pixels.setdefault(digest, []).append(i)
    phashes = np.array([int(h, 16) for h in kept["phash"].to_list()], dtype=np.uint64)
    item_codes = np.array(items, dtype=object)
    bench_exact, bench_near = read_benchmark_hashes(benchmark_file)
    dup_of, kind, new = [], [], []
    for row in images.iter_rows(named=True):
        h = int(row["phash"], 16)
        match, how = None, None
        if row["pixel_sha256"] in bench_exact or (bench_near.size and hamming(bench_near, h).min() <= near_distance):
            how = "benchmark"
        else:
            exact = [i for i in by_pixels.get(row["pixel_sha256"], []) if items[i] != row["item_id"]]
            if exact:
                match, how = ids[exact[0]], "exact"
            elif near_distance and phashes.size:
                distance = np.where(item_codes != row["item_id"], hamming(phashes, h), 65)
                best = int(np.argmin(distance))
                if distance[best] <= near_distance:
                    match, how = ids[best], "near"
        dup_of.append(match)
        kind.append(how)
        if how is None:
            by_pixels.setdefault(row["pixel_sha256"], []).append(len(ids))
            ids.append(row["image_id"])
            items.append(row["item_id"])
            item_codes = np.append(item_codes, row["item_id"])
            phashes = np.append(phashes, np.uint64(h))
            new.append({"image_id": row["image_id"], "item_id": row["item_id"], "pixel_sha256": row["pixel_sha256"], "phash": row["phash"]})
    write_parquet(pl.DataFrame(new, schema=INDEX, orient="row") if new else pl.DataFrame(schema=INDEX), index_path(workdir, source, shard))
    out = images.with_columns(pl.Series("duplicate_of", dup_of, dtype=pl.String), pl.Series("duplicate_kind", kind, dtype=pl.String))
    counts = {k: kind.count(k) for k in ("exact", "near", "benchmark")}
    return out, counts


def unique_images(images: pl.DataFrame) -> pl.DataFrame:
    """The images that go on down the pipeline: not repeats, not benchmark images."""
    return images.filter(pl.col("duplicate_kind").is_null())
