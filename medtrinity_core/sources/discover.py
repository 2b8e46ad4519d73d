"""Find a source's items (an image with its masks, a volume with its labels, a DICOM file) under its root."""

from __future__ import annotations

import bisect
import os
import re
import string
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import polars as pl

from medtrinity_core.errors import ItemError
from medtrinity_core.ids import stable_id
from medtrinity_core.sources.paths import escaped, inside, undecodable
from medtrinity_core.sources.patterns import compile_pattern, images_pattern
from medtrinity_core.sources.schema import MaskSpec, SourceConfig

RASTER_EXT = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".tif": "tiff", ".tiff": "tiff", ".bmp": "bmp"}
VOLUME_EXT = {".nii": "nifti", ".nii.gz": "nifti", ".nrrd": "nrrd", ".nhdr": "nrrd", ".mha": "metaimage", ".mhd": "metaimage"}


@dataclass(frozen=True)
class Annotation:
    relpath: str
    label: str | None  # None for label volumes: names come from the label map
    kind: str  # "mask" | "label_volume" | "boxes" | "series_member" | "dicom_seg" | "rtstruct"
    threshold: int | None = None
    value: int | None = None  # a label PNG's pixel value for this label
    match: str | None = None  # DICOM-SEG/RTSTRUCT: "frame_of_reference" when attached through a shared frame of reference


@dataclass(frozen=True)
class Item:
    item_id: str
    source: str
    relpath: str
    kind: str  # "image2d" | "volume" | "dicom"
    format: str
    annotations: tuple[Annotation, ...] = ()
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rejected:
    relpath: str
    reason: str
    detail: str
    related: tuple[str, ...] = ()  # other paths the detail names (scrubbed with it where paths identify patients)


def file_format(relpath: str, layout: str) -> tuple[str, str] | None:
    """(kind, format) from the name; DICOM files often have no extension, so the layout decides."""
    lower = relpath.lower()
    if layout == "dicom":
        return "dicom", "dicom"
    for ext, fmt in VOLUME_EXT.items():
        if lower.endswith(ext):
            return "volume", fmt
    ext = os.path.splitext(lower)[1]
    if ext in RASTER_EXT:
        return "image2d", RASTER_EXT[ext]
    if ext == ".dcm":
        return "dicom", "dicom"
    return None


# Files no one means as data: names starting with "." (.DS_Store, macOS' AppleDouble `._x.png`, `.git/`,
# `.ipynb_checkpoints/`) and the OS files that Windows and macOS' zip write without a dot.
OS_NAMES = frozenset({"thumbs.db", "ehthumbs.db", "desktop.ini", "__macosx"})
HIDDEN_DETAIL = ("a hidden file (its name or a folder on its path starts with '.', or is Thumbs.db, desktop.ini or __MACOSX): "
                 "OS and tool files are never read; rename it to include it")


def hidden(relpath: str) -> bool:
    """Whether a file is hidden: its name or a folder on its path starts with '.' or is an OS file."""
    return any(part.startswith(".") or part.lower() in OS_NAMES for part in relpath.split("/"))


@dataclass(frozen=True)
class Listing:
    files: list[str]  # visible files inside the root, sorted, names that are not UTF-8 included (as `os` decodes them)
    hidden: list[str]  # hidden files, sorted: never read nor paired
    rejected: list[Rejected]  # symlinks leading outside the root (relpaths and details escaped)


def walk(root: Path, skip: frozenset[str] = frozenset()) -> Listing:
    """Every file under root (`skip`: control files at the top, such as a drop's `_READY`, left out),
    hidden ones apart; anything resolving outside root is rejected, not followed. Hidden folders are
    walked too, so a hidden file that the image pattern selects is listed, not lost."""
    root = root.resolve()
    files, hidden_files, rejected = [], [], []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for d in list(dirnames):
            full = Path(dirpath) / d
            if full.is_symlink():
                dirnames.remove(d)
                rel = full.relative_to(root).as_posix()
                if not hidden(rel):
                    rejected.append(Rejected(escaped(rel), "outside_root", f"{escaped(rel)} is a symlinked folder; only files inside the source root are read"))
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in skip:
                continue
            if hidden(rel):
                hidden_files.append(rel)
                continue
            if not full.resolve().is_relative_to(root):
                rejected.append(Rejected(escaped(rel), "outside_root", escaped(f"{rel} resolves to {full.resolve()}, outside the source root {root}")))
                continue
            files.append(rel)
    return Listing(sorted(files), sorted(hidden_files), rejected)


def list_files(root: Path) -> tuple[list[str], list[Rejected]]:
    """Relative posix paths of the visible files under root, sorted, names that are not UTF-8 left out;
    anything resolving outside root is rejected, not followed."""
    listing = walk(root)
    return [rel for rel in listing.files if not undecodable(rel)], listing.rejected


def undecodable_detail(rel: str) -> str:
    name = PurePosixPath(rel).name
    where = "file name" if undecodable(name) else "path (a folder's name)"
    return f"{escaped(rel)}: the {where} is not valid UTF-8 (bytes shown as \\xNN); rename it in UTF-8 to include it"


def source_files(source: SourceConfig) -> tuple[list[str], list[Rejected]]:
    """The files a source's patterns are matched against (visible files under its root or drop's folder;
    names that are not UTF-8 included, so an image whose mask has one is rejected, not silently stripped
    of it), and the rejections the listing makes: symlinks outside the root, and each hidden file or
    file whose name is not UTF-8 that the `images` pattern selects (`hidden_file`, `undecodable_name`,
    relpaths escaped). A drop's `_READY` marker is a control file, never data."""
    from medtrinity_core.sources.drops import READY

    listing = walk(source.root, frozenset({READY}) if source.drop != "base" else frozenset())
    image_re = images_pattern(source)
    rejected = list(listing.rejected)
    rejected += [Rejected(escaped(rel), "hidden_file", f"{escaped(rel)}: {HIDDEN_DETAIL}") for rel in listing.hidden if image_re.fullmatch(rel)]
    rejected += [Rejected(escaped(rel), "undecodable_name", undecodable_detail(rel)) for rel in listing.files if undecodable(rel) and image_re.fullmatch(rel)]
    return listing.files, rejected


def match_problem(source: SourceConfig) -> str | None:
    """Why a source would yield nothing (an empty root, an `images` pattern that matches no file, or only
    hidden files or names that are not UTF-8), or None."""
    listing = walk(source.root)
    if not listing.files and not listing.hidden:
        return f"root {source.root} holds no files"
    pattern = images_pattern(source)
    if not any(pattern.fullmatch(rel) and not undecodable(rel) for rel in listing.files):
        n = len(listing.files) + len(listing.hidden)
        held = sum(1 for rel in listing.files + listing.hidden if pattern.fullmatch(rel))
        if held:
            return f"`images` {source.images!r} matches only hidden files or names that are not UTF-8 ({held} of the {n} files under {source.root}; they are quarantined)"
        return f"`images` {source.images!r} matches none of the {n} files under {source.root} (paths are matched whole, relative to the root)"
    return None


def fill_template(pattern: str, fields: dict[str, str]) -> str:
    """`{field}` from the image's match, regex-escaped; `{{`/`}}` are literal braces."""
    return pattern.format(**{k: re.escape(v) for k, v in fields.items() if v is not None})


LITERAL_RE = re.compile(r"(?:[A-Za-z0-9/_ -]|\\[.\-_/ ])*")


class TemplateFiles:
    """The files a `{field}` template (a mask, label-volume or box-file pattern) selects for an image.

    Scanning every file for every image made pairing O(images x files): 10^10 regex matches for a
    100,000-file source. When the template starts with plain text up to its first `{field}` (as
    `masks/{id}_...` does), every file it can select for an image starts with that text followed by the
    image's value of the field: those files are found by bisection in the sorted file list and the exact
    pattern confirms each. Templates starting with a regex construct are scanned as before."""

    def __init__(self, pattern: str, files: list[str]):
        self.pattern, self.files = pattern, sorted(files)
        literal, self.field, _, _ = next(iter(string.Formatter().parse(pattern)), ("", None, None, None))
        plain = LITERAL_RE.fullmatch(literal) is not None
        self.prefix = re.sub(r"\\(.)", r"\1", literal) if plain and self.field else None

    def matches(self, fields: dict[str, str]) -> list[tuple[str, re.Match]]:
        """(file, match of the pattern filled with the image's fields), in file order."""
        regex = compile_pattern(fill_template(self.pattern, fields), f"pattern {self.pattern!r}")
        if self.prefix is None or fields.get(self.field) is None:
            candidates = self.files
        else:
            start = self.prefix + fields[self.field]
            first = last = bisect.bisect_left(self.files, start)
            while last < len(self.files) and self.files[last].startswith(start):
                last += 1
            candidates = self.files[first:last]
        return [(rel, m) for rel in candidates if (m := regex.fullmatch(rel))]


def _label_words(label: str, spec: MaskSpec) -> str:
    for old, new in spec.label_words:
        label = label.replace(old, new)
    return label.strip()


def _masks_for(spec: MaskSpec, fields: dict, masks: TemplateFiles, image_rel: str) -> list[Annotation]:
    out = []
    for rel, m in masks.matches(fields):
        if rel == image_rel:
            continue
        if spec.label_map:
            out.extend(Annotation(rel, name, "mask", None, value) for value, name in spec.label_map)
            continue
        label = spec.label or _label_words(m.group("label"), spec)
        threshold = spec.threshold
        if threshold is None and rel.lower().endswith((".jpg", ".jpeg")):
            threshold = 128  # lossy masks: ringing around edges
        out.append(Annotation(rel, label, "mask", threshold))
    return out


def _csv_labels(source: SourceConfig) -> dict[str, str]:
    lc = source.labels_csv
    table = pl.read_csv(inside(source.root, lc.file), infer_schema_length=0)
    return dict(zip(table[lc.image_column].to_list(), table[lc.label_column].to_list()))


def _dicom_items(source: SourceConfig, matched: list[str]) -> tuple[list[Item], list[Rejected]]:
    """One item per volume series (its slices, plus the SEG and RTSTRUCT objects that reference it, or
    that share its frame of reference when the series they reference is not in the source); every
    other file (2D images without slice geometry even when they share a series, multi-frame objects,
    non-DICOM files) stands alone and the decoder says what it is. A file whose header cannot be
    parsed is rejected as `unreadable` and discovery goes on."""
    from medtrinity_core.imaging.series import read_header

    headers, rejected = {}, []
    for rel in matched:
        try:
            headers[rel] = read_header(source.root, rel)
        except ItemError as exc:
            rejected.append(Rejected(rel, exc.reason, exc.detail))
    series: dict[str, list[str]] = {}
    frame_of: dict[str, str | None] = {}
    flat_series: set[str] = set()
    annotations: dict[str, list[Annotation]] = {}
    objects, alone = [], []
    for rel, h in headers.items():
        if h is not None and h.modality in ("SEG", "RTSTRUCT"):
            objects.append((rel, h))
        elif h is not None and h.series_uid and h.has_pixels and h.is_slice:
            series.setdefault(h.series_uid, []).append(rel)
            frame_of.setdefault(h.series_uid, h.frame_of_reference)
        else:
            alone.append(rel)
            if h is not None and h.series_uid:
                flat_series.add(h.series_uid)
    for rel, h in objects:
        kind = "dicom_seg" if h.modality == "SEG" else "rtstruct"
        if h.referenced_series in series:
            annotations.setdefault(h.referenced_series, []).append(Annotation(rel, None, kind))
            continue
        shared = sorted(uid for uid, frame in frame_of.items() if h.frame_of_reference and frame == h.frame_of_reference)
        for uid in shared:
            annotations.setdefault(uid, []).append(Annotation(rel, None, kind, match="frame_of_reference"))
        if shared:
            continue
        if h.referenced_series in flat_series:
            rejected.append(Rejected(rel, "bad_annotation", f"{rel}: {h.modality} references a series of 2D images without slice geometry; SEG and RTSTRUCT are read on volumes only"))
        elif h.referenced_series or h.frame_of_reference:
            rejected.append(Rejected(rel, "unreferenced_annotation", f"{rel} references a series that is not in the source, and no series in the source shares its frame of reference"))
        else:
            rejected.append(Rejected(rel, "unreferenced_annotation", f"{rel}: {h.modality} names no referenced series or frame of reference"))
    items = []
    for uid, members in series.items():
        members = sorted(members)
        anns = [Annotation(m, None, "series_member") for m in members[1:]] + sorted(annotations.pop(uid, []), key=lambda a: a.relpath)
        items.append(Item(stable_id("item", source.name, members[0]), source.name, members[0], "dicom", "dicom", tuple(anns)))
    items += [Item(stable_id("item", source.name, rel), source.name, rel, "dicom", "dicom") for rel in alone]
    return sorted(items, key=lambda i: i.relpath), rejected


def discover(source: SourceConfig) -> tuple[list[Item], list[Rejected]]:
    """The source's items and rejections: every file the `images` pattern selects is one or the other
    (hidden files and names that are not UTF-8 are rejected unread; see `source_files`)."""
    files, rejected = source_files(source)
    image_re = images_pattern(source)
    if source.layout == "dicom":
        items, more = _dicom_items(source, [rel for rel in files if image_re.fullmatch(rel) and not undecodable(rel)])
        return items, rejected + more
    csv_labels = _csv_labels(source) if source.labels_csv else {}
    masks = [(spec, TemplateFiles(spec.pattern, files)) for spec in source.masks] if source.layout == "image_masks" else []
    label_files = TemplateFiles(source.labels, files) if source.layout == "volume_labels" else None
    box_files = TemplateFiles(source.boxes.pattern, files) if source.layout == "image_boxes" and source.boxes.format == "yolo" else None
    items = []
    for rel in files:
        m = image_re.fullmatch(rel)
        if not m or undecodable(rel):  # undecodable: rejected by source_files
            continue
        kind_fmt = file_format(rel, source.layout)
        if kind_fmt is None:
            rejected.append(Rejected(rel, "unsupported_format", f"{rel}: extension not recognised as an image, volume or DICOM"))
            continue
        kind, fmt = kind_fmt
        fields = {k: v for k, v in m.groupdict().items() if v is not None}
        annotations: list[Annotation] = []
        labels: list[str] = []
        if source.layout == "image_masks":
            for spec, spec_files in masks:
                annotations.extend(_masks_for(spec, fields, spec_files, rel))
            labels = sorted({a.label for a in annotations})
            if not annotations:
                rejected.append(Rejected(rel, "no_mask", f"{rel}: no file matches the source's mask patterns ({', '.join(m.pattern for m in source.masks)})"))
                continue
        elif source.layout == "volume_labels":
            annotations = [Annotation(f, None, "label_volume") for f, _ in label_files.matches(fields) if f != rel]
            labels = [name for _, name in source.label_map]
        elif source.layout == "image_boxes":
            if source.boxes.format == "yolo":
                annotations = [Annotation(f, None, "boxes") for f, _ in box_files.matches(fields)]  # several: normalize refuses them
            else:  # one COCO or CSV file for all images; missing or outside the root, the raw stage says so
                annotations = [Annotation(source.boxes.file, None, "boxes")]
        bad = sorted(a.relpath for a in annotations if undecodable(a.relpath))
        if bad:  # never dropped from the item silently, never written: the item waits for the file's renaming
            rejected.append(Rejected(rel, "undecodable_name", f"{rel}: its annotation file {undecodable_detail(bad[0])}",
                                     tuple(escaped(b) for b in bad)))
            continue
        elif source.layout == "labeled_images":
            label = fields.get("label") or source.label or csv_labels.get(rel) or csv_labels.get(Path(rel).name)
            labels = [label] if label else []
        items.append(
            Item(
                item_id=stable_id("item", source.name, rel),
                source=source.name,
                relpath=rel,
                kind=kind,
                format=fmt,
                annotations=tuple(sorted(annotations, key=lambda a: (a.relpath, a.value or 0))),
                labels=tuple(labels),
            )
        )
    return items, rejected
