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
from medtrinity_core.reasons import (
    BAD_ANNOTATION,
    HIDDEN_FILE,
    NO_MASK,
    OUTSIDE_ROOT,
    SYMLINK_LOOP,
    SYMLINKED_FOLDER,
    UNDECODABLE_NAME,
    UNREADABLE,
    UNREFERENCED_ANNOTATION,
    UNSUPPORTED_FORMAT,
)
from medtrinity_core.sources.paths import (
    escaped,
    inside,
    public_name,
    public_names,
    resolved,
    undecodable,
)
from medtrinity_core.sources.patterns import Pattern, compile_pattern, images_pattern
from medtrinity_core.sources.schema import MaskSpec, PrecomputedExpert, SourceConfig

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
class Link:
    """A symlink that is not read: a file resolving outside the root or in a loop, or a folder (symlinked
    folders are never followed, wherever they lead)."""
    relpath: str  # as `os` decodes it
    folder: bool
    rejected: Rejected  # its row, should a pattern select it (relpath and detail public)


@dataclass(frozen=True)
class Listing:
    files: list[str]  # visible files inside the root, sorted, names that are not UTF-8 included (as `os` decodes them)
    hidden: list[str]  # hidden files, sorted: never read nor paired
    links: list[Link]  # visible symlinks not read: outside the root, loops, folders
    names: dict[str, str]  # each listed name that is not UTF-8 -> its public form, unique in the listing

    def shown(self, rel: str) -> str:
        """How a listed relpath is written (`public_name`, unique among the listing's names)."""
        return self.names.get(rel) or public_name(rel)

    @property
    def rejected(self) -> list[Rejected]:
        """Every link's row (relpaths and details public), whether a pattern selects it or not."""
        return [link.rejected for link in self.links]


def _link_detail(reason: str, rel: str, where: str | None) -> str:
    if reason == UNREADABLE:
        return f"{rel} is a folder that cannot be listed ({where}): none of its files is read"
    if reason == SYMLINKED_FOLDER:
        return f"{rel} is a symlinked folder leading to {where} inside the source root: symlinked folders are never followed (files are read under their real path)"
    if reason == SYMLINK_LOOP:
        return f"{rel} is a symlink loop (following it leads back to a symlink on its way, never to a file); it is not read"
    if where is None:
        return f"{rel} is a symlinked folder leading outside the source root: symlinked folders are never followed; only files inside the source root are read"
    return f"{rel} resolves to {where}"


def walk(root: Path, skip: frozenset[str] = frozenset()) -> Listing:
    """Every file under root (`skip`: control files at the top, such as a drop's `_READY`, left out),
    hidden ones apart; symlinks resolving outside root or in a loop, symlinked folders and folders that
    cannot be listed are listed as links, never followed. Hidden folders are walked too, so a hidden file that the image pattern
    selects is listed, not lost."""
    root = root.resolve()
    files, hidden_files, links = [], [], []  # links: (rel, folder, reason, where) until public names are known
    unlisted: list[OSError] = []  # folders os.walk could not list (permissions): reported like links, never skipped silently
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=unlisted.append):
        dirnames.sort()
        for d in list(dirnames):
            full = Path(dirpath) / d
            if full.is_symlink():
                dirnames.remove(d)
                rel = full.relative_to(root).as_posix()
                if hidden(rel):
                    continue
                target = resolved(full)
                if target is not None and target.is_relative_to(root):
                    links.append((rel, True, SYMLINKED_FOLDER, target.relative_to(root).as_posix() or "the root itself"))
                else:
                    links.append((rel, True, OUTSIDE_ROOT, None))
        for name in filenames:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel in skip:
                continue
            if hidden(rel):
                hidden_files.append(rel)
                continue
            target = resolved(full)
            if target is None:
                links.append((rel, False, SYMLINK_LOOP, None))
            elif not target.is_relative_to(root):
                links.append((rel, False, OUTSIDE_ROOT, f"{target}, outside the source root {root}"))
            else:
                files.append(rel)
    for exc in unlisted:
        rel = Path(exc.filename).relative_to(root).as_posix() if exc.filename and Path(exc.filename).is_relative_to(root) else None
        if rel and rel != "." and not hidden(rel):
            links.append((rel, True, UNREADABLE, exc.strerror or type(exc).__name__))
    names = public_names([*files, *hidden_files, *(link[0] for link in links)])
    out = [Link(rel, folder, Rejected(names.get(rel, rel), reason, escaped(_link_detail(reason, names.get(rel, rel), where))))
           for rel, folder, reason, where in links]
    return Listing(sorted(files), sorted(hidden_files), sorted(out, key=lambda link: link.relpath), names)


def could_select_under(pattern: Pattern, folder: str) -> bool:
    """Whether a path pattern could match some path under `folder` (the `regex` module's partial match:
    `folder/` is a prefix of a string the pattern matches whole), under the patterns' time bound."""
    return pattern.fullmatch(folder + "/", partial=True) is not None


def selected_links(listing: Listing, image_re) -> list[Link]:
    """The links the `images` pattern selects: a file link it matches, a folder link under which it
    could match some path. Links it cannot select are no row of the source (a `LICENSE.txt` symlinked
    to a system file, a `docs` folder symlinked elsewhere)."""
    return [link for link in listing.links
            if (could_select_under(image_re, link.relpath) if link.folder else image_re.fullmatch(link.relpath))]


def list_files(root: Path) -> tuple[list[str], list[Rejected]]:
    """Relative posix paths of the visible files under root, sorted, names that are not UTF-8 left out,
    and the rows of the symlinks it does not follow (outside root, loops, folders)."""
    listing = walk(root)
    return [rel for rel in listing.files if not undecodable(rel)], listing.rejected


def undecodable_detail(rel: str, shown: str | None = None) -> str:
    name = PurePosixPath(rel).name
    where = "file name" if undecodable(name) else "path (a folder's name)"
    return f"{shown or public_name(rel)}: the {where} is not valid UTF-8 (bytes shown as \\xNN); rename it in UTF-8 to include it"


def _source_listing(source: SourceConfig) -> tuple[Listing, list[Rejected]]:
    from medtrinity_core.sources.drops import READY

    listing = walk(source.root, frozenset({READY}) if source.drop != "base" else frozenset())
    image_re = images_pattern(source)
    rejected = [link.rejected for link in selected_links(listing, image_re)]
    rejected += [Rejected(listing.shown(rel), HIDDEN_FILE, f"{listing.shown(rel)}: {HIDDEN_DETAIL}") for rel in listing.hidden if image_re.fullmatch(rel)]
    rejected += [Rejected(listing.shown(rel), UNDECODABLE_NAME, undecodable_detail(rel, listing.shown(rel)))
                 for rel in listing.files if undecodable(rel) and image_re.fullmatch(rel)]
    return listing, rejected


def source_files(source: SourceConfig) -> tuple[list[str], list[Rejected]]:
    """The files a source's patterns are matched against (visible files under its root or drop's folder;
    names that are not UTF-8 included, so an image whose mask has one is rejected, not silently stripped
    of it), and the rejections the listing makes, each for a path the `images` pattern selects: symlinks
    not followed (`outside_root`, `symlink_loop`, `symlinked_folder`: a folder when the pattern could
    select a path under it), hidden files (`hidden_file`) and names that are not UTF-8
    (`undecodable_name`; relpaths public: see `public_name`). A drop's `_READY` marker is a control file,
    never data."""
    listing, rejected = _source_listing(source)
    return listing.files, rejected


def match_problem(source: SourceConfig) -> str | None:
    """Why a source would yield nothing (an empty root, an `images` pattern that matches no file, or only
    hidden files, symlinks not followed or names that are not UTF-8), or None."""
    listing = walk(source.root)
    if not listing.files and not listing.hidden and not listing.links:
        return f"root {source.root} holds no files"
    pattern = images_pattern(source)
    if not any(pattern.fullmatch(rel) and not undecodable(rel) for rel in listing.files):
        n = len(listing.files) + len(listing.hidden) + len(listing.links)
        held = sum(1 for rel in listing.files + listing.hidden if pattern.fullmatch(rel)) + len(selected_links(listing, pattern))
        if held:
            return (f"`images` {source.images!r} matches only hidden files, symlinks that are not followed or names that are not UTF-8 "
                    f"({held} of the {n} files and symlinked folders under {source.root}; they are quarantined)")
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

    def __init__(self, pattern: str, files: list[str], where: str = "template"):
        self.pattern, self.files, self.where = pattern, sorted(files), where
        literal, self.field, _, _ = next(iter(string.Formatter().parse(pattern)), ("", None, None, None))
        plain = LITERAL_RE.fullmatch(literal) is not None
        self.prefix = re.sub(r"\\(.)", r"\1", literal) if plain and self.field else None

    def compiled(self, fields: dict[str, str]) -> Pattern:
        """The template filled with an image's fields; errors show the template, never the values."""
        return compile_pattern(fill_template(self.pattern, fields), self.where, shown=self.pattern)

    def matches(self, fields: dict[str, str]) -> list[tuple[str, re.Match]]:
        """(file, match of the pattern filled with the image's fields), in file order."""
        regex = self.compiled(fields)
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


def blank(label: str | None) -> bool:
    """Whether a label is empty or only whitespace: no word a description can name."""
    return label is not None and not label.strip()


def _masks_for(spec: MaskSpec, fields: dict, masks: TemplateFiles, image_rel: str) -> tuple[list[Annotation], str | None]:
    """The image's masks under one mask pattern, and the detail of the first whose label is empty (after
    `label_words`), or None."""
    out, problem = [], None
    for rel, m in masks.matches(fields):
        if rel == image_rel:
            continue
        if spec.label_map:
            for value, name in spec.label_map:
                if blank(name) and problem is None:
                    problem = f"{image_rel}: its annotation file {rel}: the label of pixel value {value} (`label_map`) is empty"
                out.append(Annotation(rel, name, "mask", None, value))
            continue
        if spec.label is not None and spec.label.strip():
            label = spec.label
        else:
            label = _label_words(m.groupdict().get("label") or "", spec)
        if blank(label) and problem is None:
            raw = m.groupdict().get("label")
            if "label" not in m.groupdict():
                why = "the mask's `label` is empty"
            elif spec.label_words and (raw or "").strip():
                why = f"its `label` group matched {raw!r}, empty after label_words"
            else:
                why = f"its `label` group matched {raw or ''!r}"
            problem = f"{image_rel}: its annotation file {rel} has an empty label ({why}); a description cannot name it"
        threshold = spec.threshold
        if threshold is None and rel.lower().endswith((".jpg", ".jpeg")):
            threshold = 128  # lossy masks: ringing around edges
        out.append(Annotation(rel, label, "mask", threshold))
    return out, problem


def _image_label(source: SourceConfig, rel: str, fields: dict, csv_labels: dict) -> tuple[str | None, str | None]:
    """A labeled image's label (the `label` group of `images`, else the fixed `label`, else its
    `labels_csv` row), and the detail when every one there is is empty (None when none is)."""
    lc = source.labels_csv
    in_csv = rel if rel in csv_labels else Path(rel).name if Path(rel).name in csv_labels else None
    candidates = [(fields.get("label"), f"{rel}: the `label` group of `images` matched {fields.get('label')!r}, an empty label"),
                  (source.label, f"{rel}: the source's `label` is empty"),
                  ((csv_labels[in_csv] or "") if in_csv is not None else None,
                   f"{rel}: its annotation file {lc.file if lc else ''} gives it an empty label (column {lc.label_column if lc else ''!r}, row {in_csv!r})")]
    for label, _ in candidates:
        if label is not None and not blank(label):
            return label, None
    return None, next((detail for label, detail in candidates if blank(label)), None)


def _csv_labels(source: SourceConfig) -> dict[str, str]:
    lc = source.labels_csv
    table = pl.read_csv(inside(source.root, lc.file), infer_schema_length=0)
    return dict(zip(table[lc.image_column].to_list(), table[lc.label_column].to_list()))


def _folders_note(listing: Listing, patterns: list[Pattern]) -> tuple[str, tuple[str, ...]]:
    """(`; ...` naming the symlinked folders, never followed, under which one of these filled templates
    could match a file: why a mask looked for there is not found; those folders' public relpaths)."""
    folders = tuple(link.rejected.relpath for link in listing.links
                    if link.folder and any(could_select_under(p, link.relpath) for p in patterns))
    return (f"; a symlinked folder, never followed, could hold it: {', '.join(folders)}" if folders else ""), folders


def _dicom_items(source: SourceConfig, matched: list[str]) -> tuple[list[Item], list[Rejected]]:
    """One item per volume series (its slices, plus the SEG and RTSTRUCT objects that reference it, or
    that share its frame of reference when the series they reference is not in the source); every
    other file (2D images without slice geometry even when they share a series, multi-frame objects,
    non-DICOM files) stands alone and the decoder says what it is. A file whose header cannot be
    parsed is rejected as `unreadable` and discovery goes on."""
    from medtrinity_core.sources.dicom_headers import read_header

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
            rejected.append(Rejected(rel, BAD_ANNOTATION, f"{rel}: {h.modality} references a series of 2D images without slice geometry; SEG and RTSTRUCT are read on volumes only"))
        elif h.referenced_series or h.frame_of_reference:
            rejected.append(Rejected(rel, UNREFERENCED_ANNOTATION, f"{rel} references a series that is not in the source, and no series in the source shares its frame of reference"))
        else:
            rejected.append(Rejected(rel, UNREFERENCED_ANNOTATION, f"{rel}: {h.modality} names no referenced series or frame of reference"))
    items = []
    for uid, members in series.items():
        members = sorted(members)
        anns = [Annotation(m, None, "series_member") for m in members[1:]] + sorted(annotations.pop(uid, []), key=lambda a: a.relpath)
        items.append(Item(stable_id("item", source.name, members[0]), source.name, members[0], "dicom", "dicom", tuple(anns)))
    items += [Item(stable_id("item", source.name, rel), source.name, rel, "dicom", "dicom") for rel in alone]
    return sorted(items, key=lambda i: i.relpath), rejected


class _OutputFiles:
    """A precomputed expert's output files for each item (see `sources.expert_outputs`)."""

    def __init__(self, source: SourceConfig, expert: PrecomputedExpert, paired: list[str]):
        from medtrinity_core.sources import expert_outputs

        self.source, self.expert, self.pairing = source, expert, expert_outputs
        where = f"source {source.name}: expert.pattern"
        self.files = TemplateFiles(expert.pattern, paired, where) if expert.pattern else None
        folder = expert_outputs.case_folder_template(expert)
        self.in_folder = TemplateFiles(folder, paired, where) if folder else None

    def of(self, rel: str, fields: dict) -> list[Annotation]:
        files = [f for f, _ in self.files.matches(fields)] if self.files else []
        in_folder = [f for f, _ in self.in_folder.matches(fields) if f not in files] if self.in_folder else []
        found = self.pairing.output_annotations(self.source.root, self.expert, rel, files, in_folder)
        return [Annotation(f, name, self.pairing.KIND) for f, name in found]


def discover(source: SourceConfig) -> tuple[list[Item], list[Rejected]]:
    """The source's items and rejections: every file the `images` pattern selects is one or the other
    (hidden files and names that are not UTF-8 are rejected unread; see `source_files`)."""
    listing, rejected = _source_listing(source)
    files = listing.files
    image_re = images_pattern(source)
    if source.layout == "dicom":
        items, more = _dicom_items(source, [rel for rel in files if image_re.fullmatch(rel) and not undecodable(rel)])
        return items, rejected + more
    csv_labels = _csv_labels(source) if source.labels_csv else {}
    linked = {link.relpath: link for link in listing.links if not link.folder}  # paired like files, so an image whose annotation is one is refused
    paired = sorted([*files, *linked])
    masks = [(spec, TemplateFiles(spec.pattern, paired, f"source {source.name}: masks[{i}].pattern"))
             for i, spec in enumerate(source.masks)] if source.layout == "image_masks" else []
    label_files = TemplateFiles(source.labels, paired, f"source {source.name}: labels") if source.layout == "volume_labels" and source.labels else None
    box_files = (TemplateFiles(source.boxes.pattern, paired, f"source {source.name}: boxes.pattern")
                 if source.layout == "image_boxes" and source.boxes.format == "yolo" else None)
    precomputed = source.precomputed_expert
    outputs = _OutputFiles(source, precomputed, paired) if precomputed else None
    items = []
    for rel in files:
        m = image_re.fullmatch(rel)
        if not m or undecodable(rel):  # undecodable: rejected by source_files
            continue
        kind_fmt = file_format(rel, source.layout)
        if kind_fmt is None:
            rejected.append(Rejected(rel, UNSUPPORTED_FORMAT, f"{rel}: extension not recognised as an image, volume or DICOM"))
            continue
        kind, fmt = kind_fmt
        fields = {k: v for k, v in m.groupdict().items() if v is not None}
        annotations: list[Annotation] = []
        labels: list[str] = []
        problem = None
        if source.layout == "image_masks":
            for spec, spec_files in masks:
                found, empty = _masks_for(spec, fields, spec_files, rel)
                annotations.extend(found)
                problem = problem or empty
            labels = sorted({a.label for a in annotations})
            if not annotations:
                note, folders = _folders_note(listing, [spec_files.compiled(fields) for _, spec_files in masks])
                rejected.append(Rejected(rel, NO_MASK, f"{rel}: no file matches the source's mask patterns ({', '.join(m.pattern for m in source.masks)}){note}", folders))
                continue
        elif source.layout == "volume_labels":
            annotations = [Annotation(f, None, "label_volume") for f, _ in label_files.matches(fields) if f != rel] if label_files else []  # else an expert labels them
            labels = [name for _, name in source.label_map]
        elif source.layout == "image_boxes":
            if source.boxes.format == "yolo":
                annotations = [Annotation(f, None, "boxes") for f, _ in box_files.matches(fields)]  # several: normalize refuses them
            else:  # one COCO or CSV file for all images; missing or outside the root, the raw stage says so
                annotations = [Annotation(source.boxes.file, None, "boxes")]
        elif source.layout == "labeled_images":
            label, problem = _image_label(source, rel, fields, csv_labels)
            labels = [label] if label else []
        if outputs is not None:
            try:
                annotations += outputs.of(rel, fields)
            except ItemError as exc:
                rejected.append(Rejected(rel, exc.reason, exc.detail, (precomputed.file,) if precomputed.file else ()))
                continue
        bad = sorted(a.relpath for a in annotations if undecodable(a.relpath))
        if bad:  # never dropped from the item silently, never written: the item waits for the file's renaming
            rejected.append(Rejected(rel, UNDECODABLE_NAME, f"{rel}: its annotation file {undecodable_detail(bad[0], listing.shown(bad[0]))}",
                                     tuple(listing.shown(b) for b in bad)))
            continue
        unread = sorted({a.relpath for a in annotations if a.relpath in linked})
        if unread:  # a symlinked annotation outside the root or in a loop: the item is refused, never stripped of it
            link = linked[unread[0]]
            rejected.append(Rejected(rel, link.rejected.reason, f"{rel}: its annotation file {link.rejected.detail}", tuple(unread)))
            continue
        if problem:  # an empty label: no description can name it (the rest of the shard goes on)
            related = tuple(a.relpath for a in annotations) + ((source.labels_csv.file,) if source.layout == "labeled_images" and source.labels_csv else ())
            rejected.append(Rejected(rel, BAD_ANNOTATION, problem, related))
            continue
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
