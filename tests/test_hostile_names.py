"""Names a file system hands over that no one meant as data or that Python cannot write: file and folder
names that are not UTF-8 (quarantined `undecodable_name`, their bytes escaped, the rest of the source
going on), hidden files and OS junk (`hidden_file` when the image pattern selects them, never read), and
a drop's `_READY` marker (a control file, never planned)."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from medtrinity_core.config import load_sources
from medtrinity_core.errors import ItemError
from medtrinity_core.pipeline import run_one
from medtrinity_core.sources.discover import discover, match_problem
from medtrinity_core.sources.drops import scan
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.paths import (
    escaped,
    inside,
    public_name,
    public_names,
    undecodable,
)
from medtrinity_core.sources.schema import (
    LabelsCsv,
    MaskSpec,
    SourceConfig,
)
from medtrinity_core.sources.shards import plan_drop, planned_shard, update_plan
from medtrinity_core.storage import Workdir

from .conftest import EXAMPLES
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
        result = run_one("raw", src, shard, wd, {})  # the runner raises if a planned path is unaccounted for
        manifests.append(result.rows)
        quarantines.append(result.rejected)
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
    held = {public_name(os.fsdecode(rel)): fate for rel, fate in HOSTILE.items() if fate is not None}
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
    assert quarantine.select("relpath", "reason").rows() == [(r"caf\xe9.dcm [not UTF-8]", "undecodable_name")]


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
        (r"images/.caf\xe9.png [not UTF-8]", "hidden_file"),
        (r"images/caf\xe9.png [not UTF-8]", "undecodable_name"),
        (r"images/d\xfcr/x.png [not UTF-8]", "undecodable_name"),
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


# ---- symlinks: loops, links the image pattern cannot select, symlinked folders --------------------------------

KVASIR = EXAMPLES / "endoscopy" / "kvasir_seg"
KVASIR_IMAGES = r"images/(?P<id>[^/]+)\.jpg"


def kvasir(tmp_path: Path, name: str = "k", images: str = KVASIR_IMAGES, **kw) -> SourceConfig:
    """A copy of the example kvasir-seg source (3 JPEG images, each with a mask) under tmp_path/name."""
    root = tmp_path / name
    if not root.exists():
        shutil.copytree(KVASIR, root)
    return SourceConfig(name=name, modality="endoscopy", license=LICENSE, root=root, layout="image_masks", images=images,
                        masks=(MaskSpec(r"masks/{id}\.jpg", label="polyp"),), **kw)


def test_a_self_referencing_symlink_the_image_pattern_selects_is_one_symlink_loop_row_and_the_rest_and_the_next_source_are_planned(tmp_path):
    looped, calm = kvasir(tmp_path, "looped"), kvasir(tmp_path, "calm")
    os.symlink("loop.jpg", looped.root / "images" / "loop.jpg")  # images/loop.jpg -> loop.jpg: resolve() raises RuntimeError on it
    os.symlink("notes.txt", looped.root / "notes.txt")  # a loop the image pattern does not select: no row
    assert match_problem(looped) is None  # `sources validate`
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), looped)
    assert manifest.height == 3
    assert quarantine.select("relpath", "reason").rows() == [("images/loop.jpg", "symlink_loop")]
    assert "symlink loop" in quarantine["detail"][0]
    calm_manifest, calm_quarantine = run_raw(Workdir.at(tmp_path / "wd"), calm)
    assert calm_manifest.height == 3 and calm_quarantine.height == 0


def test_a_file_swapped_for_a_symlink_loop_after_discovery_is_refused_at_read_time_as_a_symlink_loop(tmp_path):
    src = kvasir(tmp_path)
    items, rejected = discover(src)
    assert len(items) == 3 and rejected == []
    image, mask = items[0].relpath, items[1].annotations[0].relpath
    for rel in (image, mask):
        (src.root / rel).unlink()
        os.symlink(Path(rel).name, src.root / rel)
    with pytest.raises(ItemError) as exc:
        inside(src.root, image)
    assert exc.value.reason == "symlink_loop"
    raw, q = inventory(src, items)
    assert raw.height == 1 and dict(zip(q["relpath"], q["reason"])) == {image: "symlink_loop", items[1].relpath: "symlink_loop"}


def test_symlinks_the_image_pattern_cannot_select_get_no_row_so_the_source_plans_three_items_and_nothing_quarantined(tmp_path):
    src = kvasir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "hostname").write_text("host\n")
    os.symlink(tmp_path / "hostname", src.root / "LICENSE.txt")  # the QA input: LICENSE.txt -> /etc/hostname, docs -> /tmp, self -> .
    os.symlink(tmp_path / "elsewhere", src.root / "docs")
    os.symlink(".", src.root / "self")
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), src)
    assert manifest.height == 3 and quarantine.height == 0
    assert match_problem(src) is None


def test_a_symlinked_folder_is_reported_only_where_the_image_pattern_could_select_a_path_under_it_and_one_inside_the_root_is_not_called_outside(tmp_path):
    src = kvasir(tmp_path, images=r"(?!masks/)(?:[^/]+/)*(?P<id>[^/]+)\.jpg")  # any folder depth but masks/: could select under every link
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", src.root / "docs")
    os.symlink(".", src.root / "self")
    os.symlink("../masks", src.root / "images" / "again")
    _, rejected = discover(src)
    rows = {r.relpath: (r.reason, r.detail) for r in rejected}
    assert {rel: reason for rel, (reason, _) in rows.items()} == {"docs": "outside_root", "self": "symlinked_folder", "images/again": "symlinked_folder"}
    assert "outside" not in rows["self"][1] and "inside the source root" in rows["self"][1] and "never followed" in rows["self"][1]
    assert "masks inside the source root" in rows["images/again"][1]
    assert "outside the source root" in rows["docs"][1]
    narrow = kvasir(tmp_path, images=r"images/[^/]+/(?P<id>[^/]+)\.jpg")  # selects under images/again/ only
    assert sorted(r.relpath for r in discover(narrow)[1]) == ["images/again"]


def test_an_image_whose_mask_is_a_symlink_outside_the_root_is_refused_naming_the_mask_never_stripped_of_it(tmp_path):
    src = kvasir(tmp_path)
    (tmp_path / "outside.jpg").write_bytes((src.root / "masks" / "cju0qkwl35piu0993l0dewei2.jpg").read_bytes())
    (src.root / "masks" / "cju0qkwl35piu0993l0dewei2.jpg").unlink()
    os.symlink(tmp_path / "outside.jpg", src.root / "masks" / "cju0qkwl35piu0993l0dewei2.jpg")
    items, rejected = discover(src)
    assert len(items) == 2
    assert [(r.relpath, r.reason) for r in rejected] == [("images/cju0qkwl35piu0993l0dewei2.jpg", "outside_root")]
    assert "masks/cju0qkwl35piu0993l0dewei2.jpg" in rejected[0].detail



def test_images_whose_masks_folder_is_a_symlink_are_no_mask_naming_the_folder_that_is_never_followed(tmp_path):
    src = kvasir(tmp_path)
    shutil.move(src.root / "masks", tmp_path / "masks-elsewhere")
    os.symlink(tmp_path / "masks-elsewhere", src.root / "masks")
    items, rejected = discover(src)
    assert items == [] and {r.reason for r in rejected} == {"no_mask"} and len(rejected) == 3  # the masks folder itself: no row
    assert all("symlinked folder, never followed, could hold it: masks" in r.detail for r in rejected)

# ---- an escaped name that a real file also has ------------------------------------------------------------

@pytest.mark.parametrize("identifying", [False, True], ids=["plain paths", "paths that identify patients"])
def test_a_name_that_is_not_utf8_and_a_real_file_named_as_its_escape_are_two_rows_and_no_file_is_lost(tmp_path, bytes_names, identifying):
    root = tmp_path / "src"
    for stem in (b"caf\xe9", b"caf\\xe9", b"plain"):  # raw byte 0xe9; a backslash, x, e, 9; plain
        put(root, b"images/" + stem + b".png")
        put(root, b"masks/" + stem + b"_lesion.png")
    src = SourceConfig(name="h", modality="dermoscopy", license=LICENSE, root=root, layout="image_masks", images=r"images/(?P<id>[^/]+)\.png",
                       masks=(MaskSpec(r"masks/{id}_lesion\.png", label="lesion"),), paths_identify_patients=identifying)
    wd = Workdir.at(tmp_path / "wd")
    manifest, quarantine = run_raw(wd, src)
    paths = SourcePaths.of(wd, src)
    assert manifest.height + quarantine.height == 3
    assert sorted(paths.private(t) for t in manifest["relpath"]) == ["images/caf\\xe9.png", "images/plain.png"]
    assert [paths.private(t) for t in quarantine["relpath"]] == ["images/caf\\xe9.png [not UTF-8]"]
    assert quarantine["reason"].to_list() == ["undecodable_name"]
    assert len(set(manifest["item_id"]) | set(quarantine["item_id"])) == 3


def test_public_names_never_equal_a_listed_decodable_name_nor_each_other():
    a, b = os.fsdecode(b"caf\xe9\\xff.png"), os.fsdecode(b"caf\\xe9\xff.png")  # both escape to caf\xe9\xff.png
    assert public_name(a) != public_name(b)
    real = r"caf\xe9.png [not UTF-8]"  # a real file named as the marked form itself
    names = public_names([real, os.fsdecode(b"caf\xe9.png"), "plain.png"])
    assert names == {os.fsdecode(b"caf\xe9.png"): r"caf\xe9.png [not UTF-8 #2]"}
    assert public_name("plain.png") == "plain.png" and public_name("Zürich.png") == "Zürich.png"


# ---- empty labels ------------------------------------------------------------------------------------------

def masks_with_labels(root: Path, files: dict[str, str], pattern: str, words: tuple = ()) -> SourceConfig:
    for rel in files:
        put(root, rel.encode())
    return SourceConfig(name="e", modality="dermoscopy", license=LICENSE, root=root, layout="image_masks", images=r"images/(?P<id>[a-z])\.png",
                        masks=(MaskSpec(pattern, label_words=words),))


@pytest.mark.parametrize(
    ("pattern", "mask_a", "mask_b", "words"),
    [
        (r"masks/{id}_(?P<label>[a-z]*)\.png", "masks/a_.png", "masks/b_polyp.png", ()),  # the QA input: the group matches ""
        (r"masks/{id}_(?P<label>[a-z_]*)\.png", "masks/a___.png", "masks/b_polyp.png", (("_", " "),)),  # only spaces after label_words
    ],
    ids=["an empty label group", "a label that label_words turns to spaces"],
)
def test_a_mask_whose_label_comes_out_empty_rejects_its_image_as_a_bad_annotation_and_its_neighbour_goes_on(tmp_path, pattern, mask_a, mask_b, words):
    src = masks_with_labels(tmp_path / "src", {"images/a.png": "", "images/b.png": "", mask_a: "", mask_b: ""}, pattern, words)
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), src)
    assert manifest["relpath"].to_list() == ["images/b.png"] and manifest["labels"].to_list() == [["polyp"]]
    assert quarantine.select("relpath", "reason").rows() == [("images/a.png", "bad_annotation")]
    assert mask_a in quarantine["detail"][0] and "empty label" in quarantine["detail"][0]


def test_a_labeled_image_whose_label_group_or_labels_csv_row_is_empty_is_a_bad_annotation_and_the_others_are_labelled(tmp_path):
    root = tmp_path / "grp"
    for rel in ("images/_1.png", "images/nevus_2.png"):
        put(root, rel.encode())
    by_group = SourceConfig(name="g", modality="dermoscopy", license=LICENSE, root=root, layout="labeled_images",
                            images=r"images/(?P<label>[a-z ]*)_(?P<id>\d+)\.png")
    items, rejected = discover(by_group)
    assert [(i.relpath, i.labels) for i in items] == [("images/nevus_2.png", ("nevus",))]
    assert [(r.relpath, r.reason) for r in rejected] == [("images/_1.png", "bad_annotation")] and "empty label" in rejected[0].detail

    root = tmp_path / "csv"
    for name in ("a", "b", "c"):
        put(root, f"{name}.png".encode())
    (root / "labels.csv").write_text('image,label\na.png,\nb.png,benign\nc.png,"  "\n')
    by_csv = SourceConfig(name="c", modality="ultrasound", license=LICENSE, root=root, layout="labeled_images", images=r"[a-z]\.png",
                          labels_csv=LabelsCsv("labels.csv", "image", "label"))
    manifest, quarantine = run_raw(Workdir.at(tmp_path / "wd"), by_csv)
    assert manifest.select("relpath", "labels").rows() == [("b.png", ["benign"])]
    assert sorted(quarantine.select("relpath", "reason").rows()) == [("a.png", "bad_annotation"), ("c.png", "bad_annotation")]
    assert all("labels.csv" in d and "empty label" in d for d in quarantine["detail"])


def test_a_folder_that_cannot_be_listed_is_a_row_where_the_pattern_could_select_under_it_never_skipped_silently(tmp_path, monkeypatch):
    """Tests run as root, which reads any folder: the refusal is the one `os.scandir` raises for a user."""
    import os as os_module

    from medtrinity_core.sources.discover import discover
    from medtrinity_core.sources.schema import SourceConfig

    root = tmp_path / "src"
    for folder in ("images", "images/locked", "notes/locked"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "images" / "a.png").write_bytes(b"x")
    real = os_module.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os_module, "scandir", scandir)
    src = SourceConfig(name="locked", modality="ct", license="MIT", root=root, layout="labeled_images", images=r"images/(?:[^/]+/)*(?P<label>[^/]+)\.png")
    items, rejected = discover(src)
    assert [i.relpath for i in items] == ["images/a.png"]
    assert [(r.relpath, r.reason) for r in rejected] == [("images/locked", "unreadable")]  # notes/ could hold no image
    assert "cannot be listed (Permission denied)" in rejected[0].detail
