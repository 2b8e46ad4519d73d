"""The decontamination list builder: benchmark test images (VQA-RAD, SLAKE, PathVQA test folders)
hashed in the same pixel space as the normalized stage — decoded exactly as a source's images are — so
the list a sources file names under `decontamination: {hashes: FILE}` is one command away. Each image
gives two lines: its decoded-pixel sha256 (exact matches) and its perceptual hash (near matches within
`near_distance`)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir, atomic_write_bytes

IMAGES = r"(?i).*\.(png|jpe?g|tiff?|bmp|gif|dcm)"


def build_list(folders: list[Path], out: Path, modality: str = "xray") -> tuple[int, int]:
    """(images hashed, files that could not be read); writes one hash a line with the file as a comment."""
    lines, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        wd = Workdir.at(tmp).ensure()
        for n, folder in enumerate(folders):
            if not folder.is_dir():
                raise MedtrinityError(f"--images {folder}: not a folder")
            src = SourceConfig(name=f"benchmark-{n}", modality=modality, license="CC0-1.0", root=folder.resolve(), layout="labeled_images",
                               images=IMAGES, label="benchmark")
            items, rejected = discover(src)
            raw, raw_quarantined = inventory(src, items)
            images, quarantined = normalize(src, raw.iter_rows(named=True), wd)
            failed += len(rejected) + raw_quarantined.height + quarantined.height
            for row in images.sort("relpath").iter_rows(named=True):
                lines += [f"{row['pixel_sha256']}  # {folder.name}/{row['relpath']}", f"{row['phash']}  # {folder.name}/{row['relpath']} (perceptual)"]
    atomic_write_bytes(out, ("# medtrinity decontamination list: decoded-pixel sha256 and perceptual hash per benchmark image\n" + "\n".join(lines) + "\n").encode())
    return len(lines) // 2, failed
