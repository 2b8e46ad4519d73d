"""The normalized stage: every raw item becomes 2D 8-bit PNG images (and binary mask PNGs), content-addressed.

Rasters are decoded as they are; volumes (files, DICOM series, multi-frame objects) are oriented to
LPS and cut along the configured planes at the slices holding foreground plus a few negatives; DICOM
goes through its Modality LUT and, for PET, to SUVbw. CT is windowed from a preset, other modalities
scaled between percentiles. Every image records the hashes that dedup compares.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable

import numpy as np
import polars as pl
import SimpleITK as sitk

from medtrinity_core.errors import ItemError
from medtrinity_core.ids import salted_hash, stable_id
from medtrinity_core.imaging.body import body_box, body_record
from medtrinity_core.imaging.dedup import deduplicate, perceptual_hash, pixel_hash
from medtrinity_core.imaging.dicom import dicom_to_uint8, to_suv
from medtrinity_core.imaging.dicom_labels import rtstruct_labels, seg_labels
from medtrinity_core.imaging.expert_volumes import ExpertLayer, expert_layer
from medtrinity_core.imaging.intensity import (
    DEFAULT_CT_WINDOW,
    percentile_range,
    scale_percentile,
    window_ct,
)
from medtrinity_core.imaging.readers import (
    Raster,
    align_labels,
    collapse_grey,
    non_finite_detail,
    read_dicom,
    read_label_values,
    read_mask,
    read_raster,
    read_volumes,
    side_letters,
)
from medtrinity_core.imaging.resize import resize_image, resize_mask, target_size
from medtrinity_core.imaging.series import assemble_volumes, frames_volume
from medtrinity_core.quality.suites import severity
from medtrinity_core.reasons import (
    AMBIGUOUS_ANNOTATION,
    DECODE_ERROR,
    DUPLICATE_MASK,
    EMPTY_MASK,
    MASK_GEOMETRY_MISMATCH,
    MASK_SHAPE_MISMATCH,
    MISSING,
    NO_FOREGROUND,
    NON_FINITE_PIXELS,
    NON_FINITE_VOXELS,
)
from medtrinity_core.records import NORMALIZED, QUARANTINE, frame, quarantine_row
from medtrinity_core.sources.boxes import read_boxes
from medtrinity_core.sources.expert_outputs import KIND as EXPERT_OUTPUT
from medtrinity_core.sources.identity import SourcePaths
from medtrinity_core.sources.paths import inside
from medtrinity_core.sources.schema import SourceConfig
from medtrinity_core.storage import Workdir

STAGE = "normalized"


def _mask_key(mask: np.ndarray) -> tuple:
    """What makes two boolean masks identical, cheap to compare across many instance masks."""
    return mask.shape, hashlib.sha256(np.packbits(mask)).digest()


def screen_masks(source: SourceConfig, raw: dict, masks: list[tuple[str, np.ndarray, str, str]]) -> tuple[list[tuple[str, np.ndarray, str, None]], list[dict]]:
    """A 2D image's masks (label, mask, public path, path read) checked for annotation defects before
    anything is written, so one bad annotation costs its own item and never its shard's neighbours: a
    mask with no foreground after thresholding is `empty_mask`, one identical to an earlier mask of the
    image `duplicate_mask` (a repeated annotation file). Severity `error` (the default) quarantines the
    item with that reason; `warn` drops the mask and records it in the image's normalization record
    (`dropped_masks`): (kept masks, dropped)."""
    kept, dropped, seen = [], [], {}
    for label, mask, public, path in masks:
        if not mask.any():
            _defect(source, EMPTY_MASK, f"mask {path} of {raw['relpath']} has no foreground pixel after thresholding", label, public, dropped)
            continue
        key = _mask_key(mask)
        if key in seen:
            _defect(source, DUPLICATE_MASK, f"masks {seen[key]} and {path} of {raw['relpath']} are identical", label, public, dropped)
            continue
        seen[key] = path
        kept.append((label, mask, public, None))  # ground truth: no model
    return kept, dropped


def _defect(source: SourceConfig, reason: str, detail: str, label: str, annotation: str, dropped: list[dict]) -> None:
    """An annotation defect: under severity `error` the item is quarantined (raised), under `warn` the
    mask is dropped and recorded."""
    if severity(json.loads(source.quality or "{}"), reason) == "error":
        raise ItemError(reason, detail)
    dropped.append({"label": label, "annotation": annotation, "reason": reason})


def _resized_masks(source: SourceConfig, raw: dict, masks: list[tuple[str, np.ndarray, str, str | None]], size: tuple[int, int]) -> tuple[list, list[dict]]:
    """Masks at the image's new size. One too small to survive the resize (a sliver on a slice, a dot on a
    large raster) is no defect of the annotation: it is dropped and recorded (`lost_in_resize`). Two that
    become identical are a duplicate as the normalized suite sees it, screened like `screen_masks`."""
    kept, dropped, seen = [], [], {}
    for label, mask, annotation, model in masks:
        small = resize_mask(mask, size)
        if not small.any():
            dropped.append({"label": label, "annotation": annotation, "reason": "lost_in_resize"})
            continue
        key = _mask_key(small)
        if key in seen:
            _defect(source, DUPLICATE_MASK, f"masks {seen[key]} and {annotation} ({label}) of {raw['relpath']} are identical once resized to {size[0]}x{size[1]}",
                    label, annotation, dropped)
            continue
        seen[key] = f"{annotation} ({label})"
        kept.append((label, small, annotation, model))
    return kept, dropped


def _image_row(source: SourceConfig, raw: dict, workdir: Workdir, raster: Raster, masks: list[tuple[str, np.ndarray, str, str | None]],
               axis: str | None = None, index: int | None = None, labels: list[str] | None = None,
               boxes: list[dict] = (), label_volumes: list[dict] = (), volume_index: int | None = None,
               matches: list[dict] = (), dropped: list[dict] = (), expert_output: str | None = None) -> dict:
    """One normalized image: `masks` are (label, mask, annotation file, model: None for ground truth);
    `expert_output` the public path of a 2D expert output file, read by the rois stage."""
    h, w = raster.pixels.shape[:2]
    size = target_size(w, h, source.max_side, raster.spacing)
    masks, lost = _resized_masks(source, raw, masks, size)
    dropped = [*dropped, *lost]
    pixels = resize_image(raster.pixels, size)
    decoded_hash = pixel_hash(raster.pixels)
    uri, digest = workdir.put_png(pixels)
    mask_rows = []
    for label, mask, annotation, model in masks:
        m_uri, m_digest = workdir.put_png(mask.astype(np.uint8) * 255)
        mask_rows.append({"label": label, "uri": m_uri, "sha256": m_digest, "annotation": annotation, "model": model})
    sx, sy = size[0] / w, size[1] / h
    scaled_boxes = [{**b, "x0": round(b["x0"] * sx, 3), "y0": round(b["y0"] * sy, 3), "x1": round(b["x1"] * sx, 3), "y1": round(b["y1"] * sy, 3)} for b in boxes]
    spacing = (raster.spacing[0] * w / size[0], raster.spacing[1] * h / size[1]) if raster.spacing else (None, None)
    norm = {"intensity": raster.intensity, "size": [w, h], "resized": list(size)}
    if dropped:  # only then: rows without defects keep the normalization record they always had
        norm["dropped_masks"] = dropped
    volume = () if volume_index is None else (f"t{volume_index}",)  # 3D images keep the ids they always had
    return {
        "image_id": stable_id("img", source.name, raw["public"], axis or "", "" if index is None else index, *volume),
        "item_id": raw["item_id"],
        "source": source.name,
        "relpath": raw["public"],
        "source_sha256": raw["sha256"],
        "slice_axis": axis,
        "slice_index": index,
        "volume_index": volume_index,
        "image_uri": uri,
        "image_sha256": digest,
        "width": size[0],
        "height": size[1],
        "channels": 1 if pixels.ndim == 2 else pixels.shape[2],
        "orig_width": w,
        "orig_height": h,
        "spacing_x": None if spacing[0] is None else round(spacing[0], 6),
        "spacing_y": None if spacing[1] is None else round(spacing[1], 6),
        "image_left": raster.image_left,
        "image_top": raster.image_top,
        "body": body_record(raster.body, sx, sy),
        "patient_key": raster.patient_key,
        "study_key": raster.study_key,
        "pixel_sha256": decoded_hash,
        "phash": perceptual_hash(pixels),
        "normalization": json.dumps(norm, sort_keys=True),
        "masks": mask_rows,
        "boxes": scaled_boxes,
        "label_volumes": list(label_volumes),
        "annotation_matches": list(matches),
        "labels": (list(raw["labels"] or []) if labels is None else labels) or sorted({b["label"] for b in boxes}),
        "expert_output": expert_output,
    }


# 2D sources whose orientation is known by convention: (patient side at the image's left, at its top)
CONVENTIONS = {"radiological_axial": ("R", "A"), "radiological_coronal": ("R", "S"), "chest_pa": ("R", "S")}


def _normalize_raster(source: SourceConfig, raw: dict, workdir: Workdir) -> list[dict]:
    raster = read_raster(inside(source.root, raw["relpath"]))
    if source.orientation:
        raster.image_left, raster.image_top = CONVENTIONS[source.orientation]
        raster.body = body_box(raster.pixels, source.modality)
    h, w = raster.pixels.shape[:2]
    masks, boxes = [], []
    box_files = [a["relpath"] for a in raw["annotations"] if a["kind"] == "boxes"]
    if len(box_files) > 1:
        raise ItemError(AMBIGUOUS_ANNOTATION, f"{len(box_files)} box files match {raw['relpath']} ({', '.join(box_files)}); the boxes pattern must pick one")
    outputs = [a["public"] for a in raw["annotations"] if a["kind"] == EXPERT_OUTPUT]
    if len(outputs) > 1:
        raise ItemError(AMBIGUOUS_ANNOTATION, f"{len(outputs)} expert outputs match {raw['relpath']} ({', '.join(outputs[:4])}); the expert's pattern must pick one")
    for ann in raw["annotations"]:
        if ann["kind"] == EXPERT_OUTPUT:
            continue  # read by the rois stage, at the image's original size
        if ann["kind"] == "boxes":
            boxes += read_boxes(source.boxes, source.root, ann["relpath"], raw["relpath"], w, h)
            continue
        if ann["value"] is not None:
            mask = read_label_values(inside(source.root, ann["relpath"])) == ann["value"]
        else:
            mask = read_mask(inside(source.root, ann["relpath"]), ann["threshold"])
        if mask.shape != (h, w):
            raise ItemError(MASK_SHAPE_MISMATCH, f"mask {ann['relpath']} is {mask.shape[1]}x{mask.shape[0]}, image {raw['relpath']} is {w}x{h}")
        if ann["value"] is not None and not mask.any():
            continue  # a label PNG's value absent from this image: that label is not on it (no defect)
        masks.append((ann["label"], mask, ann["public"], ann["relpath"]))
    masks, dropped = screen_masks(source, raw, masks)
    return [_image_row(source, raw, workdir, raster, masks, boxes=boxes, dropped=dropped, expert_output=outputs[0] if outputs else None)]


def _volume_intensity(source: SourceConfig, values: np.ndarray, ds=None) -> tuple[np.ndarray, Callable[[np.ndarray, set], tuple[np.ndarray, dict]]]:
    """(values, (plane, labels on it) -> 8 bits): CT windowed from the preset of a label on the slice
    (`label_windows`) or of the source; PET in SUVbw when the DICOM tags allow; otherwise one
    percentile range per volume, so slices stay comparable."""
    extra: dict = {}
    if ds is not None and source.modality == "pet":
        values, extra = to_suv(values, ds)
    if source.modality == "ct":
        windows = dict(source.label_windows)

        def window(plane, labels):
            preset = next((windows[name] for name in sorted(labels) if name in windows), None) or source.window or DEFAULT_CT_WINDOW
            return window_ct(plane, preset)

        return values, window
    lo, hi = percentile_range(values, nonzero_only=True)

    def scale(plane, labels):
        pixels, params = scale_percentile(plane, lo, hi)
        return pixels, {**params, **extra}

    return values, scale


def pick_slices(foreground: np.ndarray, negatives: int, every: int = 1) -> list[int]:
    """Every `every`-th slice with foreground, plus `negatives` evenly spaced slices without."""
    fg = [int(i) for i in np.flatnonzero(foreground)][::every]
    empty = [int(i) for i in np.flatnonzero(~foreground)]
    if negatives and empty:
        picks = np.linspace(0, len(empty) - 1, num=min(negatives, len(empty)) + 2)[1:-1] if len(empty) > negatives else range(len(empty))
        fg += sorted({empty[round(p)] for p in picks})
    return sorted(fg)


# On an LPS volume (array axes z->S, y->P, x->L): how to cut a plane, and the patient sides at the
# image's left and top edges. Coronal and sagittal planes are flipped so the head is up.
PLANES = {
    "axial": (0, lambda a, k: a[k], ("R", "A")),
    "coronal": (1, lambda a, k: a[:, k, :][::-1], ("R", "S")),
    "sagittal": (2, lambda a, k: a[:, :, k][::-1], ("A", "S")),
}


def foreground_slices(labels: np.ndarray, axis: int, min_fraction: float) -> np.ndarray:
    """Slices along `axis` where some label covers at least `min_fraction` of that label's largest slice."""
    keep = np.zeros(labels.shape[axis], dtype=bool)
    other = tuple(a for a in range(3) if a != axis)
    for value in np.unique(labels[labels != 0]):
        area = (labels == value).sum(axis=other)
        keep |= (area > 0) & (area >= min_fraction * area.max())
    return keep


def patient_keys(ds, workdir: Workdir) -> tuple[str | None, str | None]:
    """Salted hashes of PatientID and StudyInstanceUID, for patient-level splits without identities."""
    if ds is None:
        return None, None
    salt = workdir.salt()
    return tuple(salted_hash(str(ds.get(tag)), salt) if ds.get(tag) else None for tag in ("PatientID", "StudyInstanceUID"))


def _lps(labels: np.ndarray, image: sitk.Image) -> np.ndarray:
    label_image = sitk.GetImageFromArray(labels.astype(np.int32))
    label_image.CopyInformation(image)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(label_image, "LPS")).astype(np.int64)


def _slice_volume(source: SourceConfig, raw: dict, workdir: Workdir, image: sitk.Image, labels: np.ndarray | None,
                  names: dict[int, str], label_file: str, ds=None, volume_index: int | None = None, matches: list[dict] = (),
                  flags: dict | None = None, expert: ExpertLayer | None = None) -> list[dict]:
    """Orient to LPS, pick the slices, window and write them with their per-label masks. An expert's label
    volume (`expert`, on the image's grid) gives masks marked with its model; the slices are chosen by the
    ground-truth labels when the volume has any, else by the expert's."""
    if labels is not None:
        labels = _lps(labels, image)
    layer = _lps(expert.labels, image) if expert is not None else None
    image = sitk.DICOMOrient(image, "LPS")
    values = sitk.GetArrayViewFromImage(image).astype(np.float32)
    if not np.isfinite(values).all():  # DICOM float pixel data (volume files are checked as they are read)
        raise ItemError(NON_FINITE_VOXELS, f"{raw['relpath']}: {non_finite_detail(values)}")
    if labels is None:
        labels = np.zeros(values.shape, dtype=np.int64)
        chooses = layer if layer is not None else labels  # slices chosen by the ground truth, else by the expert
    else:
        chooses = labels
    values, intensity = _volume_intensity(source, values, ds)
    sx, sy, sz = image.GetSpacing()
    volumes = _label_volumes(labels, names, (sx, sy, sz)) + (_label_volumes(layer, expert.names, (sx, sy, sz)) if layer is not None else [])
    patient, study = patient_keys(ds, workdir)
    spacing = {"axial": (sx, sy), "coronal": (sx, sz), "sagittal": (sy, sz)}
    rows = []
    for axis in source.slice_axes:
        dim, cut, (left, top) = PLANES[axis]
        for k in pick_slices(foreground_slices(chooses, dim, source.min_slice_fraction), source.negatives_per_volume, source.slice_every):
            plane_labels = cut(labels, k)
            masks = [(names.get(int(v), f"label {int(v)}"), plane_labels == v, label_file, None) for v in np.unique(plane_labels) if v != 0]
            if layer is not None:
                plane_expert = cut(layer, k)
                masks += [(expert.names[int(v)], plane_expert == v, expert.annotation, expert.model) for v in np.unique(plane_expert) if v != 0]
            plane = np.ascontiguousarray(cut(values, k))
            pixels, params = intensity(plane, {m[0] for m in masks})
            raster = Raster(pixels, {**params, "orientation": "LPS", **(flags or {})}, spacing=spacing[axis], image_left=left, image_top=top, patient_key=patient,
                            study_key=study, body=body_box(plane, source.modality))
            # a slice's labels are the ones on it: a negative slice is not labelled with the volume's lesion
            rows.append(_image_row(source, raw, workdir, raster, masks, axis, k, labels=sorted({m[0] for m in masks}), label_volumes=volumes,
                                   volume_index=volume_index, matches=matches))
    if not rows:
        raise ItemError(NO_FOREGROUND, f"{raw['relpath']}: no slice holds a label and negatives_per_volume is {source.negatives_per_volume}")
    return rows


def _label_volumes(labels: np.ndarray, names: dict[int, str], spacing: tuple[float, float, float]) -> list[dict]:
    """Each label's volume in ml."""
    present, counts = np.unique(labels[labels != 0], return_counts=True)
    voxel_ml = spacing[0] * spacing[1] * spacing[2] / 1000.0
    return [{"label": names.get(int(v), f"label {int(v)}"), "volume_ml": round(float(c) * voxel_ml, 4)} for v, c in zip(present, counts)]


def _normalize_volume(source: SourceConfig, raw: dict, workdir: Workdir) -> list[dict]:
    """A volume file (a 4D one gives the volumes `volume_index` picks) with its label volume, matched
    in patient space (resampled onto the image's grid when they differ), and its expert output, which
    must lie on the image's grid. A 4D label file pairs with the image's volumes by index; a 3D one (and
    an expert's output) labels each of them."""
    truth = [a for a in raw["annotations"] if a["kind"] != EXPERT_OUTPUT]
    if len(truth) > 1:
        names = ", ".join(a["relpath"] for a in truth)
        raise ItemError(AMBIGUOUS_ANNOTATION, f"{len(truth)} label volumes match {raw['relpath']} ({names}); the labels pattern must pick one")
    volumes = read_volumes(inside(source.root, raw["relpath"]), source.volume_index, source.max_voxels)
    ann = truth[0] if truth else None
    by_index = dict(read_volumes(inside(source.root, ann["relpath"]), "all", source.max_voxels)) if ann else {}
    matches = [{"annotation_sha256": ann["sha256"], "kind": ann["kind"], "match": "geometry"}] if ann else []
    rows = []
    expert = source.precomputed_expert
    layer = expert_layer(expert, raw, volumes[0][1], source.root, source.max_voxels) if expert and volumes else None  # the volumes of a 4D file share one grid
    for t, image in volumes:
        labels = None
        if ann:
            found = by_index.get(t, by_index.get(None))
            if found is None:
                raise ItemError(MASK_GEOMETRY_MISMATCH, f"{ann['relpath']} has no volume {t} to pair with {raw['relpath']}")
            labels = align_labels(found, image, ann["relpath"])
        rows += _slice_volume(source, raw, workdir, image, labels, dict(source.label_map), ann["public"] if ann else "", volume_index=t, matches=matches,
                              expert=layer)
    return rows


def _normalize_series(source: SourceConfig, raw: dict, workdir: Workdir) -> list[dict]:
    """A DICOM series (each volume `volume_index` picks of a 4D one) with its SEG and RTSTRUCT objects."""
    members = [raw["relpath"]] + [a["relpath"] for a in raw["annotations"] if a["kind"] == "series_member"]
    rows = []
    for t, series in assemble_volumes(source.root, members, source.allow_burned_in, source.volume_index, source.max_voxels):
        labels, names, label_file, matches, withheld = None, {}, "", [], 0
        for ann in raw["annotations"]:
            if ann["kind"] in ("dicom_seg", "rtstruct"):
                read = seg_labels if ann["kind"] == "dicom_seg" else rtstruct_labels
                found = read(inside(source.root, ann["relpath"]), series, via_frame_of_reference=ann["match"] == "frame_of_reference")
                offset = max(names, default=0)  # a second SEG or RTSTRUCT numbers its labels after the first's
                numbers = np.where(found.labels > 0, found.labels + offset, 0)
                labels = numbers if labels is None else np.where(numbers > 0, numbers, labels)
                names.update({k + offset: source.rename(v) for k, v in found.names.items()})
                label_file, withheld = ann["public"], withheld + found.withheld
                matches.append({"annotation_sha256": ann["sha256"], "kind": ann["kind"], "match": found.match})
        flags = {"withheld_labels": withheld} if withheld else {}
        rows += _slice_volume(source, raw, workdir, series.image, labels, names, label_file, series.first, volume_index=t, matches=matches, flags=flags)
    return rows


CINE_FRAMES = 3  # frames kept from a multi-frame object without geometry: first, middle, last


def _normalize_frames(source: SourceConfig, raw: dict, workdir: Workdir, values: np.ndarray, ds) -> list[dict]:
    """Enhanced multi-frame and RT dose grids become volumes; cine loops give evenly spaced frames."""
    colour = values.ndim == 4
    volume = None if colour else frames_volume(values, ds, raw["relpath"])
    if volume is not None:
        return _slice_volume(source, raw, workdir, volume, None, {}, "", ds)
    picks = sorted({round(i) for i in np.linspace(0, values.shape[0] - 1, num=min(CINE_FRAMES, values.shape[0]))})
    rows = []
    for k in picks:
        if colour:
            raster = Raster(collapse_grey(values[k].astype(np.uint8)), {"method": "none", "source_mode": "RGB"})
        else:
            raster = Raster(*dicom_to_uint8(values[k].astype(np.float32), ds, source.modality, source.window))
        raster.patient_key, raster.study_key = patient_keys(ds, workdir)
        rows.append(_image_row(source, raw, workdir, raster, [], "frame", k))
    return rows


def _normalize_dicom(source: SourceConfig, raw: dict, workdir: Workdir) -> list[dict]:
    if raw["annotations"]:
        return _normalize_series(source, raw, workdir)
    values, ds = read_dicom(inside(source.root, raw["relpath"]), source.allow_burned_in, source.max_voxels)
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return _normalize_frames(source, raw, workdir, values, ds)
    if values.ndim == 3:  # colour
        raster = Raster(collapse_grey(values.astype(np.uint8)), {"method": "none", "source_mode": "RGB"})
    else:
        if not np.isfinite(values).all():
            raise ItemError(NON_FINITE_PIXELS, f"{raw['relpath']} holds NaN or infinite values")
        raster = Raster(*dicom_to_uint8(values, ds, source.modality, source.window))
    if "PixelSpacing" in ds:
        row_mm, col_mm = (float(v) for v in ds.PixelSpacing)
        raster.spacing = (col_mm, row_mm)
    if "ImageOrientationPatient" in ds:
        iop = [float(v) for v in ds.ImageOrientationPatient]
        raster.image_left, raster.image_top = side_letters(iop[:3], iop[3:])
        raster.body = body_box(values, source.modality)
    raster.patient_key, raster.study_key = patient_keys(ds, workdir)
    return [_image_row(source, raw, workdir, raster, [])]


READERS = {"image2d": _normalize_raster, "volume": _normalize_volume, "dicom": _normalize_dicom}


def _local(raw: dict, paths: SourcePaths) -> dict:
    """The raw row with the files' own relative paths for reading (`relpath`) beside the public ones
    that are written (`public`): they differ where the source's paths identify patients."""
    annotations = [{**a, "relpath": paths.private(a["relpath"]), "public": a["relpath"]} for a in raw["annotations"] or []]
    return {**raw, "relpath": paths.private(raw["relpath"]), "public": raw["relpath"], "annotations": annotations}


def normalize(source: SourceConfig, raw_rows: Iterable[dict], workdir: Workdir) -> tuple[pl.DataFrame, pl.DataFrame]:
    paths = SourcePaths.of(workdir, source)
    rows, quarantined = [], []
    for raw in raw_rows:
        try:
            local = _local(raw, paths)
        except KeyError as exc:
            quarantined.append(quarantine_row(raw["item_id"], source.name, raw["relpath"], STAGE, MISSING, str(exc.args[0])))
            continue
        try:
            rows.extend(READERS[raw["kind"]](source, local, workdir))
            continue
        except ItemError as exc:
            reason, detail = exc.reason, exc.detail
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the shard
            reason, detail = DECODE_ERROR, f"{type(exc).__name__}: {exc}"[:300]
        detail = paths.scrub(detail, [local["relpath"], *(a["relpath"] for a in local["annotations"])])
        quarantined.append(quarantine_row(raw["item_id"], source.name, raw["relpath"], STAGE, reason, detail))
    return frame(rows, NORMALIZED), frame(quarantined, QUARANTINE)


def _taken_down(source: SourceConfig, images: pl.DataFrame, quarantined: pl.DataFrame, workdir: Workdir) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Items of a patient named in a takedown request leave here, before the dedup index sees them, their
    PNGs deleted (a new file of that patient can only be known once its header is read)."""
    from medtrinity_core.takedown import load

    kept, withdrawn = load(workdir, source.name).withdraw(images, source.name, STAGE)
    if withdrawn.is_empty():
        return images, quarantined
    kept_uris = {u for row in kept.iter_rows(named=True) for u in [row["image_uri"], *(m["uri"] for m in row["masks"] or [])]}
    for row in images.filter(pl.col("item_id").is_in(withdrawn["item_id"].to_list())).iter_rows(named=True):
        for uri in [row["image_uri"], *(m["uri"] for m in row["masks"] or [])]:
            if uri not in kept_uris:
                workdir.resolve(uri).unlink(missing_ok=True)
    return kept, pl.concat([quarantined, withdrawn])


def normalized_stage(source: SourceConfig, raw: pl.DataFrame, workdir: Workdir, shard: str) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The normalized stage of one shard: (images, quarantine rows, duplicate counts), each image marked
    against every image kept so far (within and across shards and sources)."""
    images, quarantined = normalize(source, raw.iter_rows(named=True), workdir)
    images, quarantined = _taken_down(source, images, quarantined, workdir)
    images, found = deduplicate(images, workdir, source.name, shard, source.near_distance, source.benchmark_hashes)
    return images, quarantined, {"exact_duplicates": found["exact"], "near_duplicates": found["near"], "benchmark_matches": found["benchmark"]}
