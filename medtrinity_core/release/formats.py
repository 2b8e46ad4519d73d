"""Export writers, one per format trainers read. Every file is written from sorted rows with no
wall-clock date in it (tar members with mtime 0 and uid/gid 0, PNGs without text chunks, JSON with
sorted keys), so an export of unchanged triplets is byte-identical.

- `hf`: Parquet shards `data/<split>-NNNNN-of-MMMMM.parquet` bounded in rows and bytes, with the Hugging
  Face features metadata that makes `datasets` decode `image` (an Image struct `{bytes, path}`); ROIs as
  a list of structs with their RLE mask and its `size`.
- `medtrinity`: the MedTrinity-25M row shape (`id`, `image`, `caption`) plus our ROI fields, as Parquet.
- `webdataset`: tar shards `<split>-NNNNNN.tar` of `<key>.png`, `<key>.json`, `<key>.mask_<n>.png`.
- `llava`: `llava/<split>.json` conversations over `llava/images/`: the description answers a captioning
  instruction, then ROI-grounded questions answered from the measured facts.
- `coco`: `coco/<split>.json` instances with RLE segmentations over `coco/images/`.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from medtrinity_core.describe.facts import side_of
from medtrinity_core.records import FACET_NAMES
from medtrinity_core.roi.rle import decode
from medtrinity_core.storage import Workdir, atomic_write_bytes

FORMATS = ("hf", "medtrinity", "webdataset", "llava", "coco")
ALIASES = {"parquet": "hf"}
MAX_ROWS = 1000  # rows per shard
MAX_BYTES = 256 * 2**20  # image bytes per shard
CAPTION_INSTRUCTION = "<image>\nDescribe this medical image in detail: modality, organ and tissue, each region of interest, its appearance and relationships."


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def roi_masks(row: dict) -> list[np.ndarray]:
    return [decode(r["rle_counts"], row["height"], row["width"]) for r in row["rois"]]


def _roi_record(roi: dict, row: dict) -> dict:
    return {
        "roi_id": roi["roi_id"], "label": roi["label"], "term": roi["term"], "category": roi["category"], "method": roi["method"],
        "confidence": roi["confidence"], "bbox": list(roi["bbox"]), "area_ratio": roi["area_ratio"], "location": roi["location"],
        "mask": {"size": [row["height"], row["width"]], "counts": list(roi["rle_counts"] or [])},
    }


def record(row: dict) -> dict:
    """The metadata of one row, as every format carries it (images apart)."""
    return {
        "id": row["triplet_id"], "image_id": row["image_id"], "source": row["source"], "modality": row["modality"], "split": row["split"],
        "width": row["width"], "height": row["height"], "image_sha256": row["image_sha256"],
        "caption": row["description"], "coarse_caption": row["coarse_caption"], "facets": row["facets"],
        "rois": [_roi_record(r, row) for r in row["rois"]],
        "passage_ids": [p["passage_id"] for p in row["provenance"]["passages"] or []],
        "faithfulness": row["faithfulness"], "completeness": row.get("completeness"),
        "contradictions": json.dumps(row.get("contradictions") or [], sort_keys=True), "license": row["license"],
        "provenance": json.dumps(row["provenance"], sort_keys=True, default=str),
    }


def _shards(rows: list[dict], size_of: Callable[[dict], int]) -> dict[str, list[list[dict]]]:
    """Per split, consecutive chunks of at most MAX_ROWS rows and MAX_BYTES bytes."""
    out: dict[str, list[list[dict]]] = {}
    for split in sorted({r["split"] for r in rows}):
        chunks, current, total = [], [], 0
        for row in (r for r in rows if r["split"] == split):
            n = size_of(row)
            if current and (len(current) >= MAX_ROWS or total + n > MAX_BYTES):
                chunks.append(current)
                current, total = [], 0
            current.append(row)
            total += n
        chunks.append(current)
        out[split] = chunks
    return out


# -- Parquet (hf, medtrinity) -----------------------------------------------------------------------

def _value(dtype: str) -> dict:
    return {"dtype": dtype, "_type": "Value"}


def _list(feature) -> dict:
    return {"feature": feature, "_type": "List"}


ROI_FEATURES = {
    "roi_id": _value("string"), "label": _value("string"), "term": _value("string"), "category": _value("string"), "method": _value("string"),
    "confidence": _value("float64"), "bbox": _list(_value("int64")), "area_ratio": _value("float64"), "location": _value("string"),
    "mask": {"size": _list(_value("int64")), "counts": _list(_value("int64"))},
}
HF_FEATURES = {
    "id": _value("string"), "image": {"_type": "Image"}, "image_id": _value("string"), "source": _value("string"), "modality": _value("string"),
    "split": _value("string"), "width": _value("int64"), "height": _value("int64"), "image_sha256": _value("string"),
    "caption": _value("string"), "coarse_caption": _value("string"), "facets": {k: _value("string") for k in FACET_NAMES},
    "rois": _list(ROI_FEATURES), "passage_ids": _list(_value("string")), "faithfulness": _value("float64"), "completeness": _value("float64"),
    "contradictions": _value("string"), "license": _value("string"), "provenance": _value("string"),
}
MEDTRINITY_FEATURES = {"id": _value("string"), "image": {"_type": "Image"}, "caption": _value("string"), "source": _value("string"),
                       "modality": _value("string"), "split": _value("string"), "license": _value("string"), "rois": _list(ROI_FEATURES)}


def _arrow_type(feature):
    import pyarrow as pa

    if feature.get("_type") == "Value":
        return {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64()}[feature["dtype"]]
    if feature.get("_type") == "Image":
        return pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    if feature.get("_type") == "List":
        return pa.list_(_arrow_type(feature["feature"]))
    return pa.struct([(k, _arrow_type(v)) for k, v in feature.items()])


def _schema(features: dict):
    import pyarrow as pa

    return pa.schema([(k, _arrow_type(v)) for k, v in features.items()], metadata={"huggingface": json.dumps({"info": {"features": features}})})


def write_parquet_format(workdir: Workdir, rows: list[dict], out: Path, features: dict, shape: Callable[[dict, bytes], dict]) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema, written = _schema(features), []
    for split, chunks in _shards(rows, lambda r: Path(workdir.resolve(r["image_uri"])).stat().st_size).items():
        for n, chunk in enumerate(chunks):
            records = [shape(record(r), Path(workdir.resolve(r["image_uri"])).read_bytes()) for r in chunk]
            table = pa.Table.from_pylist(records, schema=schema)
            name = f"data/{split}-{n:05d}-of-{len(chunks):05d}.parquet"
            buf = pa.BufferOutputStream()
            pq.write_table(table, buf, compression="zstd", row_group_size=256)
            atomic_write_bytes(out / name, buf.getvalue().to_pybytes())
            written.append(name)
    return written


def write_hf(workdir: Workdir, rows: list[dict], out: Path) -> list[str]:
    return write_parquet_format(workdir, rows, out, HF_FEATURES, lambda rec, png: {**rec, "image": {"bytes": png, "path": f"{rec['image_id']}.png"}})


def write_medtrinity(workdir: Workdir, rows: list[dict], out: Path) -> list[str]:
    keys = set(MEDTRINITY_FEATURES)
    return write_parquet_format(workdir, rows, out, MEDTRINITY_FEATURES,
                                lambda rec, png: {**{k: v for k, v in rec.items() if k in keys}, "image": {"bytes": png, "path": f"{rec['image_id']}.png"}})


# -- webdataset ---------------------------------------------------------------------------------------

def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = len(data), 0, 0o644, 0, 0, "", ""
    tar.addfile(info, io.BytesIO(data))


def write_webdataset(workdir: Workdir, rows: list[dict], out: Path) -> list[str]:
    written = []
    for split, chunks in _shards(rows, lambda r: Path(workdir.resolve(r["image_uri"])).stat().st_size).items():
        for n, chunk in enumerate(chunks):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                for row in chunk:
                    key = row["triplet_id"]
                    _member(tar, f"{key}.png", Path(workdir.resolve(row["image_uri"])).read_bytes())
                    _member(tar, f"{key}.json", json.dumps(record(row), sort_keys=True).encode())
                    for i, mask in enumerate(roi_masks(row)):
                        _member(tar, f"{key}.mask_{i}.png", png_bytes(mask.astype(np.uint8) * 255))
            name = f"{split}-{n:06d}.tar"
            atomic_write_bytes(out / name, buf.getvalue())
            written.append(name)
    return written


# -- images beside JSON (llava, coco) ------------------------------------------------------------------

def _copy_images(workdir: Workdir, rows: list[dict], folder: Path) -> None:
    for row in rows:
        target = folder / f"{row['image_id']}.png"
        if not target.exists():
            atomic_write_bytes(target, Path(workdir.resolve(row["image_uri"])).read_bytes())


def _box01(roi: dict, row: dict) -> list[float]:
    x0, y0, x1, y1 = roi["bbox"]
    return [round(x0 / row["width"], 3), round(y0 / row["height"], 3), round(x1 / row["width"], 3), round(y1 / row["height"], 3)]


def roi_questions(row: dict) -> list[tuple[str, str]]:
    """Question-answer pairs each answered from the measured facts of a label's largest region."""
    groups: dict[str, list[dict]] = {}
    for roi in sorted(row["rois"], key=lambda r: (-r["area_ratio"], r["roi_id"])):
        groups.setdefault(roi["label"], []).append(roi)
    pairs = []
    for label, regions in groups.items():
        top = regions[0]
        pairs.append((f"Where is the {label}?", f"In the {top['location']}."))
        side = side_of(top["location"])
        if side in ("left", "right"):
            frame = "the patient's" if "patient's" in top["location"] else "the image's"
            pairs.append((f"Which side is the {label} on?", f"On {frame} {side}."))
        size = "small" if top["area_ratio"] < 0.01 else ("medium" if top["area_ratio"] < 0.10 else "large")
        pairs.append((f"How large is the {label}?", f"It is {size}, covering {100 * top['area_ratio']:.1f}% of the image."))
        pairs.append((f"How many {label} regions are there?", f"{len(regions)}."))
        pairs.append((f"Give the bounding box of the largest {label} region as [x0, y0, x1, y1] in 0-1.", json.dumps(_box01(top, row))))
    return pairs


def write_llava(workdir: Workdir, rows: list[dict], out: Path) -> list[str]:
    _copy_images(workdir, rows, out / "llava" / "images")
    written = []
    for split in sorted({r["split"] for r in rows}):
        conversations = []
        for row in (r for r in rows if r["split"] == split):
            turns = [{"from": "human", "value": CAPTION_INSTRUCTION}, {"from": "gpt", "value": row["description"]}]
            for question, answer in roi_questions(row):
                turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
            conversations.append({"id": row["triplet_id"], "image": f"images/{row['image_id']}.png", "conversations": turns})
        name = f"llava/{split}.json"
        atomic_write_bytes(out / name, json.dumps(conversations, indent=1, sort_keys=True).encode())
        written.append(name)
    return written


def write_coco(workdir: Workdir, rows: list[dict], out: Path) -> list[str]:
    _copy_images(workdir, rows, out / "coco" / "images")
    labels = sorted({r["label"] for row in rows for r in row["rois"]})
    categories = [{"id": i + 1, "name": label, "supercategory": "finding"} for i, label in enumerate(labels)]
    category = {c["name"]: c["id"] for c in categories}
    written = []
    for split in sorted({r["split"] for r in rows}):
        images, annotations = [], []
        for n, row in enumerate((r for r in rows if r["split"] == split), start=1):
            images.append({"id": n, "file_name": f"images/{row['image_id']}.png", "width": row["width"], "height": row["height"],
                           "medtrinity_id": row["triplet_id"], "caption": row["description"], "license_id": row["license"]})
            for roi in row["rois"]:
                x0, y0, x1, y1 = roi["bbox"]
                annotations.append({
                    "id": len(annotations) + 1, "image_id": n, "category_id": category[roi["label"]], "iscrowd": 0,
                    "segmentation": {"size": [row["height"], row["width"]], "counts": list(roi["rle_counts"] or [])},
                    "area": round(roi["area_ratio"] * row["width"] * row["height"]), "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "medtrinity_roi_id": roi["roi_id"], "method": roi["method"],
                })
        doc = {"info": {"description": "medtrinity export", "version": "1"}, "images": images, "annotations": annotations, "categories": categories, "licenses": []}
        name = f"coco/{split}.json"
        atomic_write_bytes(out / name, json.dumps(doc, sort_keys=True).encode())
        written.append(name)
    return written


WRITERS = {"hf": write_hf, "medtrinity": write_medtrinity, "webdataset": write_webdataset, "llava": write_llava, "coco": write_coco}
