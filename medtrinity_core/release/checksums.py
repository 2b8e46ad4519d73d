"""`SHA256SUMS` for every file of an export, and `verify`: every file re-hashed, none missing or added,
every row's image and masks present and decodable, and the counts the card states matched."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections import Counter
from pathlib import Path

from PIL import Image

SUMS = "SHA256SUMS"
SUMMARY = "export.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def files_of(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != SUMS)


def write_sums(out: Path) -> None:
    lines = [f"{sha256_file(out / rel)}  {rel}\n" for rel in files_of(out)]
    (out / SUMS).write_text("".join(lines))


def _decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder failure is the finding
        return False


def _rle_ok(mask: dict) -> bool:
    h, w = mask["size"]
    return sum(mask["counts"]) == h * w


def _rows(out: Path, fmt: str, problems: list[str]) -> Counter:
    """Rows per split, each checked: its image (and masks) present and decodable."""
    counts: Counter = Counter()
    if fmt in ("hf", "medtrinity"):
        import pyarrow.parquet as pq

        for path in sorted((out / "data").glob("*.parquet")):
            try:
                table = pq.read_table(path)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{path.relative_to(out)}: unreadable Parquet ({exc.__class__.__name__})")
                continue
            for row in table.to_pylist():
                counts[row["split"]] += 1
                if not (row["image"] and row["image"]["bytes"] and _decodes(row["image"]["bytes"])):
                    problems.append(f"{path.relative_to(out)}: row {row['id']}: image missing or undecodable")
                if any(not _rle_ok(r["mask"]) for r in row["rois"] or []):
                    problems.append(f"{path.relative_to(out)}: row {row['id']}: a mask's runs do not cover its size")
    elif fmt == "webdataset":
        for path in sorted(out.glob("*.tar")):
            try:
                with tarfile.open(path) as tar:
                    members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
            except (tarfile.TarError, OSError, EOFError) as exc:
                problems.append(f"{path.name}: unreadable tar ({exc.__class__.__name__})")
                continue
            for name, data in members.items():
                if name.endswith(".json"):
                    row = json.loads(data)
                    counts[row["split"]] += 1
                    key = name[: -len(".json")]
                    if not _decodes(members.get(f"{key}.png", b"")):
                        problems.append(f"{path.name}: {key}.png missing or undecodable")
                    for n in range(len(row["rois"])):
                        if not _decodes(members.get(f"{key}.mask_{n}.png", b"")):
                            problems.append(f"{path.name}: {key}.mask_{n}.png missing or undecodable")
    else:
        base = out / fmt
        for path in sorted(base.glob("*.json")):
            doc = json.loads(path.read_text())
            split = path.stem
            entries = doc if fmt == "llava" else doc["images"]
            counts[split] += len(entries)
            for entry in entries:
                image = base / (entry["image"] if fmt == "llava" else entry["file_name"])
                if not (image.is_file() and _decodes(image.read_bytes())):
                    problems.append(f"{path.relative_to(out)}: {image.relative_to(out)} missing or undecodable")
            if fmt == "coco":
                problems += [f"{path.relative_to(out)}: annotation {a['id']}: mask runs do not cover its size" for a in doc["annotations"] if not _rle_ok(a["segmentation"])]
    return counts


def verify(out: Path) -> list[str]:
    """Every problem found, one line each; empty when the export is whole."""
    problems: list[str] = []
    sums = out / SUMS
    if not sums.is_file():
        return [f"{SUMS} is missing: not an export, or it was cut short"]
    listed = {}
    for line in sums.read_text().splitlines():
        digest, _, rel = line.partition("  ")
        listed[rel] = digest
    for rel, digest in sorted(listed.items()):
        path = out / rel
        if not path.is_file():
            problems.append(f"{rel}: listed in {SUMS} but missing")
        elif sha256_file(path) != digest:
            problems.append(f"{rel}: checksum mismatch (the file changed after export)")
    problems += [f"{rel}: not listed in {SUMS}" for rel in files_of(out) if rel not in listed]
    try:
        summary = json.loads((out / SUMMARY).read_text())
    except (OSError, ValueError):
        return problems + [f"{SUMMARY}: missing or unreadable, so rows cannot be checked"]
    counts = _rows(out, summary["format"], problems)
    expected = summary["counts"]["split"]
    if dict(counts) != expected:
        problems.append(f"rows per split {dict(sorted(counts.items()))} differ from the card's {expected}")
    return problems
