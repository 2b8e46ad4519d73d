"""Names a file system hands over that no one meant as data or that Python cannot write: file and folder
names that are not UTF-8 (quarantined `undecodable_name`, their bytes escaped, the rest of the source
going on), hidden files and OS junk (`hidden_file` when the image pattern selects them, never read), and
a drop's `_READY` marker (a control file, never planned)."""

from __future__ import annotations

import io
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.drops import plan_drop, scan
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.inventory import raw_stage
from medtrinity_core.sources.paths import escaped, undecodable
from medtrinity_core.sources.schema import SourceConfig, load_sources
from medtrinity_core.sources.shards import planned_shard, update_plan
from medtrinity_core.storage import Workdir

from .dicom_factory import dicom_source, write_series

LICENSE = "LicenseRef-test"


def png_bytes(value: int = 120) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def put(root: Path, rel: bytes, data: bytes | None = None) -> None:
    """A file at a bytes path under root (os.open on bytes: the name reaches the file system unchanged)."""
    path = os.fsencode(root) + b"/" + rel
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(png_bytes() if data is None else data)


def non_utf8_names_allowed(tmp_path: Path) -> bool:
    if sys.platform != "linux" or sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"):
        return False
    try:
        put(tmp_path, b"probe-\xff")
    except OSError:
        return False
    os.remove(os.fsencode(tmp_path) + b"/probe-\xff")
    return True


@pytest.fixture
def bytes_names(tmp_path):
    if not non_utf8_names_allowed(tmp_path):
        pytest.skip("this file system refuses names that are not UTF-8")


def run_raw(wd: Workdir, src) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Plan the source and run the raw stage of every shard: (manifest, quarantine) of all shards."""
    manifests, quarantines = [], []
    for shard in update_plan(wd, src):
        df, q, _ = raw_stage(src, planned_shard(wd, src.name, shard), wd)  # raises if a planned path is unaccounted for
        manifests.append(df)
        quarantines.append(q)
    return pl.concat(manifests), pl.concat(quarantines)


SOURCES = """\
version: 1
sources:
  - name: hostile
    modality: dermoscopy
    license: {license}
    root: hostile
    layout: image_masks
    paths_identify_patients: {identifying}
    images: 'images/(?P<id>.+)\\.png'
    masks:
      - pattern: 'masks/{{id}}_(?P<label>.+)\\.png'
  - name: calm
    modality: dermoscopy
    license: {license}
    root: calm
    layout: image_masks
    images: 'images/(?P<id>[^/]+)\\.png'
    masks:
      - pattern: 'masks/{{id}}_lesion\\.png'
        label: lesion
"""

# relpath (bytes) under the hostile source's root -> what its image becomes (None: a planned item)
HOSTILE = {
    b"images/good1.png": None,
    b"images/good2.png": None,
    b"images/caf\xe9.png": ("undecodable_name", r"images/caf\xe9.png"),  # the file name is not UTF-8 (Latin-1)
    b"images/d\xfcr/scan.png": ("undecodable_name", r"images/d\xfcr/scan.png"),  # a folder's name is not
    b"images/good3.png": ("undecodable_name", r"masks/good3_l\xe9sion.png"),  # its mask's name is not
    "images/Zürich.png".encode(): None,  # UTF-8 beyond ASCII is fine
}
MASKS = [b"masks/good1_lesion.png", b"masks/good2_lesion.png", b"masks/caf\xe9_lesion.png", b"masks/d\xfcr/scan_lesion.png",
         b"masks/good3_l\xe9sion.png", "masks/Zürich_lesion.png".encode()]


@pytest.mark.parametrize("identifying", [False, True], ids=["plain paths", "paths that identify patients"])
def test_names_that_are_not_utf8_are_quarantined_with_their_bytes_escaped_and_every_other_file_and_source_goes_on(tmp_path, bytes_names, identifying):
    for rel in [*HOSTILE, *MASKS]:
        put(tmp_path / "hostile", rel)
    for name in ("a", "b"):
        put(tmp_path / "calm", f"images/{name}.png".encode())
        put(tmp_path / "calm", f"masks/{name}_lesion.png".encode())
    (tmp_path / "sources.yaml").write_text(SOURCES.format(license=LICENSE, identifying=str(identifying).lower()))
    sources = load_sources(tmp_path / "sources.yaml")
    wd = Workdir.at(tmp_path / "wd")
    hostile, calm = sources.source("hostile"), sources.source("calm")

    manifest, quarantine = run_raw(wd, hostile)
    paths = SourcePaths.of(wd, hostile)
    good = {rel.decode() for rel, fate in HOSTILE.items() if fate is None}
    assert {paths.private(t) for t in manifest["relpath"]} == good
    assert all(len(row["annotations"]) == 1 for row in manifest.iter_rows(named=True))
    held = {escaped(os.fsdecode(rel)): fate for rel, fate in HOSTILE.items() if fate is not None}
    assert {paths.private(t) for t in quarantine["relpath"]} == set(held)
    for row in quarantine.iter_rows(named=True):
        rel = paths.private(row["relpath"])
        _, named = held[rel]
        assert row["reason"] == "undecodable_name" and "not valid UTF-8" in row["detail"]
        if identifying:  # names identify patients: the detail names the tokens, never the escaped name
            assert row["relpath"].startswith("path-") and Path(named).name not in row["detail"]
        else:
            assert row["relpath"] == rel and named in row["detail"]

    calm_manifest, calm_quarantine = run_raw(wd, calm)  # the same sources file's other source is planned as ever
    assert calm_manifest.height == 2 and calm_quarantine.height == 0


def test_a_dicom_file_whose_name_is_not_utf8_is_quarantined_and_the_series_beside_it_planned(tmp_path, bytes_names):
    write_series(tmp_path / "ct" / "series")
    put(tmp_path / "ct", b"caf\xe9.dcm", b"not read")
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), dicom_source(tmp_path / "ct"))
    assert manifest.height == 1 and manifest["kind"].to_list() == ["dicom"]
    assert quarantine.select("relpath", "reason").rows() == [(r"caf\xe9.dcm", "undecodable_name")]


def test_a_landing_folder_or_drop_named_with_bytes_that_are_not_utf8_is_reported_escaped_once(tmp_path, bytes_names):
    landing = tmp_path / "landing"
    put(landing, b"caf\xe9/d1/_READY", b"")
    put(landing, b"calm/d\xfcr/_READY", b"")
    put(landing, b"calm/d1/_READY", b"")
    drops, problems = scan(landing, {"calm"}, set(), limit=20)
    assert drops == [("calm", "d1")]
    assert problems == [r"?caf\xe9", r"calm/d\xfcr"]
    json.dumps(problems, ensure_ascii=False).encode("utf-8")  # a cursor and a log line can hold them
    assert scan(landing, {"calm"}, {*problems, "calm/d1"}, limit=20) == ([], [])


def labeled(root: Path, images: str, **kw) -> SourceConfig:
    return SourceConfig(name="h", modality="dermoscopy", license=LICENSE, root=root, layout="labeled_images", images=images, label="lesion", **kw)


# file -> its row when the pattern selects every file: "item" (planned), or the quarantine reason
EVERYTHING = {
    "images/scan.png": "item",
    "images/.hidden_image.png": "hidden_file",
    "images/.DS_Store": "hidden_file",  # macOS Finder
    "images/._scan.png": "hidden_file",  # macOS AppleDouble, beside the real scan
    "__MACOSX/images/._scan.png": "hidden_file",  # macOS' zip
    "images/Thumbs.db": "hidden_file",  # Windows Explorer
    "images/desktop.ini": "hidden_file",
    "images/.ipynb_checkpoints/scan-checkpoint.png": "hidden_file",  # Jupyter
    ".git/objects/ab/cdef0123": "hidden_file",
    "notes.txt": "unsupported_format",  # visible: matched, and not an image
}


@pytest.mark.parametrize(
    ("images", "expected"),
    [
        (r".*", EVERYTHING),
        (r"images/(?P<id>[^/]+)\.png", {"images/scan.png": "item", "images/.hidden_image.png": "hidden_file", "images/._scan.png": "hidden_file"}),
    ],
    ids=["a pattern selecting every file", "a pattern selecting PNGs in images/"],
)
def test_hidden_files_and_os_junk_the_image_pattern_selects_are_quarantined_unread_as_hidden_files(tmp_path, images, expected):
    root = tmp_path / "src"
    for rel in EVERYTHING:
        put(root, rel.encode(), b"garbage: never decoded" if rel != "images/scan.png" else None)
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), labeled(root, images))
    rows = {**{r: "item" for r in manifest["relpath"]}, **dict(zip(quarantine["relpath"], quarantine["reason"]))}
    assert rows == expected
    assert all("hidden file" in d for d, r in zip(quarantine["detail"], quarantine["reason"]) if r == "hidden_file")


def test_a_drops_ready_marker_is_never_planned_but_its_hidden_files_are_listed(tmp_path):
    landing = tmp_path / "landing"
    drop = landing / "h" / "d1"
    for rel in ("scan.png", "_READY", ".DS_Store", "sub/_READY"):
        put(drop, rel.encode(), None if rel == "scan.png" else b"")
    wd = Workdir.at(tmp_path / "wd")
    src = labeled(tmp_path / "unused", r".*")
    shards = plan_drop(wd, src, "d1", landing)
    entries = pl.concat([planned_shard(wd, "h", s) for s in shards])
    rows = dict(zip(entries["relpath"], entries["reason"]))
    assert rows == {"d1/scan.png": None, "d1/.DS_Store": "hidden_file", "d1/sub/_READY": "unsupported_format"}  # only the top marker is control


def test_discovery_never_hands_out_a_name_that_cannot_be_written(tmp_path, bytes_names):
    for rel in (b"images/ok.png", b"images/caf\xe9.png", b"images/.caf\xe9.png", b"images/d\xfcr/x.png"):
        put(tmp_path, rel)
    items, rejected = discover(labeled(tmp_path, r"images/.*\.png"))
    assert [i.relpath for i in items] == ["images/ok.png"]
    assert sorted((r.relpath, r.reason) for r in rejected) == [
        (r"images/.caf\xe9.png", "hidden_file"),
        (r"images/caf\xe9.png", "undecodable_name"),
        (r"images/d\xfcr/x.png", "undecodable_name"),
    ]
    assert not any(undecodable(r.relpath) or undecodable(r.detail) for r in rejected)


@pytest.mark.parametrize(
    ("name", "shown", "bad"),
    [
        (b"caf\xe9.png", r"caf\xe9.png", True),
        (b"d\xfcr/x.png", r"d\xfcr/x.png", True),
        ("Zürich.png".encode(), "Zürich.png", False),
        (b"plain.png", "plain.png", False),
    ],
)
def test_a_name_is_escaped_byte_by_byte_only_where_it_is_not_utf8(name, shown, bad):
    assert escaped(os.fsdecode(name)) == shown and undecodable(os.fsdecode(name)) == bad
