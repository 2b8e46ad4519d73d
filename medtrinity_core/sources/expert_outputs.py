"""Pairing a source's items with the output files of a precomputed expert (`expert: {kind: precomputed}`),
when the shard is planned: the outputs become the item's annotations of kind `expert_output`, and an item
whose output is missing is rejected as `missing_annotation` (as a missing mask is rejected).

Where each tool's output lies: `pattern` is a template like the masks' (`{field}` from the `images`
match). TotalSegmentator writes a folder per case (`seg/{id}` holds `liver.nii.gz`, `kidney_left.nii.gz`,
...: every NIfTI file directly in the folder is one structure, named by its file name) or, with `--ml`, one
multilabel file the pattern names itself. CheXmask is one CSV per dataset, its rows keyed by an image
column (`id_column`): an image is paired with the row whose id is its relative path, a trailing part of it
(`patient1/study1/view1_frontal.jpg`), its file name, or its file name without the extension.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path, PurePosixPath

from medtrinity_core.errors import ItemError
from medtrinity_core.reasons import BAD_ANNOTATION, MISSING_ANNOTATION
from medtrinity_core.sources.schema import PrecomputedExpert

KIND = "expert_output"
NIFTI_SUFFIXES = (".nii.gz", ".nii")
# a TotalSegmentator case folder's structure files, after the case's own template
STRUCTURE_FILES = r"(?:/[^/]+\.nii(?:\.gz)?)?"


def structure_name(relpath: str) -> str:
    """`seg/case1/kidney_left.nii.gz` -> `kidney_left` (TotalSegmentator names classes by their files)."""
    name = PurePosixPath(relpath).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def case_folder_template(expert: PrecomputedExpert) -> str | None:
    """TotalSegmentator: the template of the structure files in an item's case folder (None otherwise)."""
    return expert.pattern + STRUCTURE_FILES if expert.format == "totalsegmentator" else None


@lru_cache(maxsize=4)
def _chexmask_ids(path: str, size: int, mtime: float, column: str) -> frozenset[str]:
    import polars as pl

    try:
        header = pl.read_csv(path, n_rows=0)
    except Exception as exc:  # noqa: BLE001 - polars raises its own errors on a file that is no CSV
        raise ItemError(BAD_ANNOTATION, f"{Path(path).name} cannot be read as a CheXmask CSV: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None
    if column not in header.columns:
        shown = ", ".join(header.columns[:12])
        raise ItemError(BAD_ANNOTATION, f"{Path(path).name} has no column {column!r} (its columns: {shown}); set expert.id_column to the one naming the images")
    try:
        ids = pl.read_csv(path, columns=[column], schema_overrides={column: pl.String})[column]
    except Exception as exc:  # noqa: BLE001 - a ragged row or an unterminated quote
        raise ItemError(BAD_ANNOTATION, f"{Path(path).name} cannot be read as a CheXmask CSV: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None
    return frozenset(ids.drop_nulls().to_list())


def chexmask_ids(root: Path, expert: PrecomputedExpert) -> frozenset[str]:
    """The image ids the source's CheXmask CSV has rows for (read once per process and file version)."""
    path = Path(root) / expert.file
    try:
        stat = path.stat()
    except OSError as exc:
        raise ItemError(MISSING_ANNOTATION, f"the CheXmask file {expert.file} cannot be read ({exc.strerror or exc})") from None
    return _chexmask_ids(str(path), stat.st_size, stat.st_mtime, expert.id_column)


def id_candidates(relpath: str) -> list[str]:
    """The ids an image may be listed under, most specific first."""
    parts = PurePosixPath(relpath).parts
    tails = ["/".join(parts[i:]) for i in range(len(parts))]
    return [*tails, os.path.splitext(parts[-1])[0]]


def chexmask_key(relpath: str, ids: frozenset[str]) -> str | None:
    return next((c for c in id_candidates(relpath) if c in ids), None)


def output_annotations(root: Path, expert: PrecomputedExpert, relpath: str, files: list[str], in_folder: list[str] = ()) -> list[tuple[str, str | None]]:
    """(output file, structure name or None) for one item; raises `ItemError` when it has none. `files`:
    the files `pattern` selects for the item; `in_folder`: TotalSegmentator's structure files in the case
    folder it selects (unused for chexmask)."""
    if expert.format == "chexmask":
        if chexmask_key(relpath, chexmask_ids(root, expert)) is None:
            raise ItemError(MISSING_ANNOTATION, f"{relpath}: no row of {expert.file} has {expert.id_column} equal to its path, a trailing part of it, "
                                                "its file name or its stem")
        return [(expert.file, None)]
    found = [(m, None) for m in files if m != relpath] + [(m, structure_name(m)) for m in in_folder if m != relpath]
    if not found:
        what = " (a case folder of structure files, or a multilabel file)" if expert.format == "totalsegmentator" else ""
        raise ItemError(MISSING_ANNOTATION, f"{relpath}: no file matches the expert's output pattern {expert.pattern}{what}")
    return found
