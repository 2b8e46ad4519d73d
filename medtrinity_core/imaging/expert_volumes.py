"""3D outputs of a precomputed expert as a label volume on its image's grid: TotalSegmentator's folder of
per-structure NIfTI files or its `--ml` multilabel file (names in a CaretExtension XML header extension),
or any integer label volume with the source's `labels`.

Unlike a ground-truth label volume, which is resampled onto its image when the grids differ, an expert's
output must lie on its image's grid: same shape, and the same voxel-to-patient mapping (spacing, origin,
direction) within a small tolerance. A tool writes its output in the input's space; one on another grid
was run on another input (a resampled or cropped copy), and placing it would be a guess: it is refused as
`bad_annotation`, naming both files and both grids.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parses a NIfTI extension's XML; no entities are resolved (see _caret_labels)
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.readers import read_volumes
from medtrinity_core.reasons import AMBIGUOUS_ANNOTATION, BAD_ANNOTATION
from medtrinity_core.sources.expert_outputs import KIND as EXPERT_OUTPUT
from medtrinity_core.sources.paths import inside
from medtrinity_core.sources.schema import PrecomputedExpert

SPACING_RTOL = 1e-3  # relative, per axis (NIfTI stores float32; tools round-trip through it)
ORIGIN_ATOL_MM = 1e-2
DIRECTION_ATOL = 1e-3


@dataclass
class ExpertLayer:
    """An expert's label volume on the image's grid, oriented LPS like it."""

    labels: np.ndarray  # int64 (z, y, x); 0 is background
    names: dict[int, str]
    annotation: str  # the public path of the output (a TotalSegmentator case: its folder)
    model: str


def _grid(image: sitk.Image) -> str:
    size = "x".join(str(s) for s in image.GetSize())
    spacing = ", ".join(f"{s:.4g}" for s in image.GetSpacing())
    origin = ", ".join(f"{o:.4g}" for o in image.GetOrigin())
    return f"{size} voxels, spacing ({spacing}) mm, origin ({origin})"


def check_grid(output: sitk.Image, image: sitk.Image, output_name: str, image_name: str) -> None:
    """Refuse an output that is not on its image's voxel grid (both oriented alike before the check)."""
    same = (output.GetSize() == image.GetSize()
            and np.allclose(output.GetSpacing(), image.GetSpacing(), rtol=SPACING_RTOL)
            and np.allclose(output.GetOrigin(), image.GetOrigin(), atol=ORIGIN_ATOL_MM)
            and np.allclose(output.GetDirection(), image.GetDirection(), atol=DIRECTION_ATOL))
    if not same:
        raise ItemError(BAD_ANNOTATION, f"expert output {output_name} is not on the grid of its image {image_name}: the output has {_grid(output)}, "
                                        f"the image {_grid(image)} (an expert's output must be written in its input's space)")


def _volume(path: Path, public: str, max_voxels: int) -> sitk.Image:
    volumes = read_volumes(path, "all", max_voxels)
    if len(volumes) != 1 or volumes[0][0] is not None:
        raise ItemError(BAD_ANNOTATION, f"expert output {public} holds {len(volumes)} volumes; a label volume has one")
    return volumes[0][1]


def _integers(values: np.ndarray, public: str) -> np.ndarray:
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
            raise ItemError(BAD_ANNOTATION, f"expert output {public} holds values that are not whole numbers: a label volume holds label values")
    return values.astype(np.int64)


def caret_labels(path: Path) -> dict[int, str]:
    """The label names TotalSegmentator's `--ml` output keeps in a NIfTI header extension: CaretExtension
    XML, `<Label Key="1" ...><![CDATA[spleen]]></Label>` inside `<LabelTable>` (read with nibabel, whatever
    the extension's code: TotalSegmentator writes code 0)."""
    import nibabel as nib

    header = nib.load(str(path)).header
    for extension in getattr(header, "extensions", ()):
        content = extension.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        if "<CaretExtension" in text:
            return _caret_table(text, path.name)
    return {}


def _caret_table(text: str, name: str) -> dict[int, str]:
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ItemError(BAD_ANNOTATION, f"{name}: its CaretExtension XML declares a DOCTYPE or entities, which are never expanded")
    try:
        root = ET.fromstring(text.strip().rstrip("\x00").strip())  # noqa: S314 - no DTD allowed above
    except ET.ParseError as exc:
        raise ItemError(BAD_ANNOTATION, f"{name}: its CaretExtension XML cannot be parsed ({exc})") from None
    names = {}
    for label in root.iter("Label"):
        key, value = label.get("Key"), (label.text or "").strip()
        if key is None or not key.strip().lstrip("-").isdigit() or not value:
            raise ItemError(BAD_ANNOTATION, f"{name}: a CaretExtension Label has no whole-number Key or no name ({ET.tostring(label, 'unicode')[:80]})")
        names[int(key)] = value
    return names


def _totalsegmentator(expert: PrecomputedExpert, raw: dict, image: sitk.Image, root: Path, max_voxels: int) -> tuple[np.ndarray, dict[int, str], str]:
    anns = [a for a in raw["annotations"] if a["kind"] == EXPERT_OUTPUT]
    whole = [a for a in anns if a["label"] is None]
    if whole and (len(whole) > 1 or len(anns) > len(whole)):
        shown = ", ".join(a["public"] for a in anns[:4])
        raise ItemError(AMBIGUOUS_ANNOTATION, f"{len(anns)} TotalSegmentator outputs match {raw['public']} ({shown}); the pattern must pick one case folder or one multilabel file")
    if whole:
        ann = whole[0]
        path = inside(root, ann["relpath"])
        output = _volume(path, ann["public"], max_voxels)
        check_grid(output, image, ann["public"], raw["public"])
        names = caret_labels(path)
        if not names:
            raise ItemError(BAD_ANNOTATION, f"{ann['public']} has no CaretExtension label table in its NIfTI header: a TotalSegmentator --ml file names its "
                                            "labels there (a plain label volume is format label_map, with `labels`)")
        values = _integers(sitk.GetArrayFromImage(output), ann["public"])
        unnamed = sorted(set(np.unique(values[values != 0]).tolist()) - set(names))
        if unnamed:
            raise ItemError(BAD_ANNOTATION, f"{ann['public']} holds label values {', '.join(map(str, unnamed[:5]))} that its CaretExtension label table does not name")
        return values, names, ann["public"]
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.int64)
    names: dict[int, str] = {}
    for ann in sorted(anns, key=lambda a: a["label"]):
        output = _volume(inside(root, ann["relpath"]), ann["public"], max_voxels)
        check_grid(output, image, ann["public"], raw["public"])
        mask = sitk.GetArrayViewFromImage(output) != 0
        if not mask.any():
            continue  # TotalSegmentator writes every class it knows; an empty file is a structure not in view
        value = len(names) + 1
        labels[mask] = value
        names[value] = ann["label"]
    folder = anns[0]["public"].rsplit("/", 1)[0] if anns else ""
    return labels, names, folder


def _label_map(expert: PrecomputedExpert, raw: dict, image: sitk.Image, root: Path, max_voxels: int) -> tuple[np.ndarray, dict[int, str], str]:
    anns = [a for a in raw["annotations"] if a["kind"] == EXPERT_OUTPUT]
    if len(anns) != 1:
        raise ItemError(AMBIGUOUS_ANNOTATION, f"{len(anns)} expert outputs match {raw['public']} ({', '.join(a['public'] for a in anns[:4])}); the pattern must pick one")
    ann = anns[0]
    output = _volume(inside(root, ann["relpath"]), ann["public"], max_voxels)
    check_grid(output, image, ann["public"], raw["public"])
    values = _integers(sitk.GetArrayFromImage(output), ann["public"])
    names = dict(expert.labels)
    return np.where(np.isin(values, list(names)), values, 0), names, ann["public"]  # values the source does not name are not its classes


def expert_layer(expert: PrecomputedExpert, raw: dict, image: sitk.Image, root: Path, max_voxels: int) -> ExpertLayer | None:
    """The item's expert label volume on `image` (oriented LPS), or None when the item has no output."""
    if not any(a["kind"] == EXPERT_OUTPUT for a in raw["annotations"]):
        return None
    read = _totalsegmentator if expert.format == "totalsegmentator" else _label_map
    labels, names, annotation = read(expert, raw, image, root, max_voxels)
    return ExpertLayer(labels, names, annotation, expert.model)
