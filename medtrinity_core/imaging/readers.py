"""Decoders: 2D rasters and masks (Pillow), volumes (SimpleITK), DICOM files (pydicom).

Every failure becomes an `ItemError` with a specific reason, so the caller can quarantine the item.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from PIL import Image, UnidentifiedImageError
from pydicom.pixels import apply_modality_lut

from medtrinity_core.errors import ItemError
from medtrinity_core.imaging.intensity import percentile_range, scale_percentile
from medtrinity_core.reasons import (
    BURNED_IN_ANNOTATION,
    DECOMPRESSION_BOMB,
    INCOMPLETE_HEADER,
    MASK_GEOMETRY_MISMATCH,
    NO_PIXEL_DATA,
    NON_FINITE_PIXELS,
    NON_FINITE_VOXELS,
    NOT_AN_IMAGE,
    TRUNCATED,
    UNDECODABLE_PIXELS,
    UNREADABLE,
    UNSUPPORTED_DIMENSION,
    UNSUPPORTED_PIXEL_TYPE,
    UNSUPPORTED_TRANSFER_SYNTAX,
    VOLUME_INDEX_OUT_OF_RANGE,
)

MAX_PIXELS = 100_000_000  # decompression-bomb limit for one 2D image
MAX_VOXELS = 1_000_000_000  # default limit for a volume, a DICOM object or a series, checked from headers before decoding
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
PATIENT_AXES = ("L", "P", "S")  # LPS: +x, +y, +z
OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}


@dataclass
class Raster:
    """A decoded 2D image: uint8 (H, W) or (H, W, 3), with what was done to get there."""

    pixels: np.ndarray
    intensity: dict
    spacing: tuple[float, float] | None = None  # (x, y) in mm
    image_left: str | None = None  # patient direction at the image's left edge
    image_top: str | None = None
    patient_key: str | None = None  # salted hashes: a patient's images stay groupable, not identifiable
    study_key: str | None = None
    body: tuple[float, float, float, float] | None = None  # the patient's body: (x0, y0, x1, y1) in pixels


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ItemError(DECOMPRESSION_BOMB, f"{path.name}: {exc}") from None
    except UnidentifiedImageError:
        raise ItemError(NOT_AN_IMAGE, f"{path.name} is not a readable image file") from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = TRUNCATED if "truncated" in str(exc).lower() else UNREADABLE
        raise ItemError(reason, f"{path.name}: {exc}") from None


def collapse_grey(pixels: np.ndarray) -> np.ndarray:
    """RGB whose channels are equal is grey: keep one channel."""
    if pixels.ndim == 3 and np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2]):
        return np.ascontiguousarray(pixels[..., 0])
    return pixels


def read_raster(path: Path) -> Raster:
    img = _open(path)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(img).astype(np.float32)
        if not np.isfinite(values).all():
            raise ItemError(NON_FINITE_PIXELS, f"{path.name} holds NaN or infinite values")
        lo, hi = percentile_range(values, nonzero_only=False)
        pixels, intensity = scale_percentile(values, lo, hi)
        intensity["source_mode"] = mode
        return Raster(pixels, intensity)
    if mode in ("1", "L"):
        pixels = np.asarray(img.convert("L"))
    else:  # RGB, RGBA (alpha dropped), LA, P (palette expanded), CMYK, YCbCr
        pixels = collapse_grey(np.asarray(img.convert("RGB")))
    return Raster(np.ascontiguousarray(pixels), {"method": "none", "source_mode": mode})


def read_label_values(path: Path) -> np.ndarray:
    """A label PNG's values: palette indices, or grey levels (the first channel of colour files)."""
    img = _open(path)
    values = np.asarray(img)
    return values[..., 0] if values.ndim == 3 else values


def read_mask(path: Path, threshold: int | None) -> np.ndarray:
    """Boolean foreground: any colour channel above the threshold (alpha ignored); non-zero when None."""
    img = _open(path)
    if img.mode == "P":
        values = np.asarray(img)  # palette index: 0 is background in label PNGs
        return values > (threshold or 0)
    if img.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
        values = np.asarray(img.convert("RGB")).max(axis=2)
    else:
        values = np.asarray(img)
    return values > (threshold if threshold is not None else 0)


def side_letters(row_vec, col_vec) -> tuple[str, str]:
    """(patient side at the image's left edge, at its top edge) from direction cosines in LPS."""

    def toward(vec) -> str:
        axis = int(np.argmax(np.abs(vec)))
        letter = PATIENT_AXES[axis]
        return letter if vec[axis] > 0 else OPPOSITE[letter]

    return OPPOSITE[toward(row_vec)], OPPOSITE[toward(col_vec)]


def _nibabel_volume(path: Path) -> sitk.Image | None:
    """NIfTI that SimpleITK cannot read (NIfTI-2, say), through nibabel: RAS affine to LPS geometry;
    a 4D file becomes a 4D image (time last), so `read_volumes` treats both readers alike."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except Exception:  # noqa: BLE001 - not a NIfTI nibabel knows either
        return None
    if data.ndim not in (3, 4):
        raise ItemError(UNSUPPORTED_DIMENSION, f"{path.name} has {data.ndim} dimensions, expected 3 (or 4 with volume_index)")
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS+ to LPS+
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    axes = (3, 2, 1, 0) if data.ndim == 4 else (2, 1, 0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(*axes)), isVector=False)
    direction = (affine[:3, :3] / spacing).ravel()
    if data.ndim == 4:
        image.SetSpacing((*(float(v) for v in spacing), 1.0))
        image.SetOrigin((*(float(v) for v in affine[:3, 3]), 0.0))
        d = direction.reshape(3, 3)
        image.SetDirection(tuple(float(v) for v in np.block([[d, np.zeros((3, 1))], [np.zeros((1, 3)), np.ones((1, 1))]]).ravel()))
    else:
        image.SetSpacing(tuple(float(v) for v in spacing))
        image.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
        image.SetDirection(tuple(float(v) for v in direction))
    return image


def pick_volumes(count: int, volume_index: str | int | None, name: str) -> list[int]:
    """Which 3D volumes of a 4D series to keep: first, middle, N (from 0) or all."""
    if volume_index is None:
        raise ItemError(UNSUPPORTED_DIMENSION, f"{name} is 4D ({count} volumes: cine, DCE, multi-phase or fMRI); "
                        "set `volume_index: first | middle | N | all` on the source to take 3D volumes from it")
    if volume_index == "first":
        return [0]
    if volume_index == "middle":
        return [count // 2]
    if volume_index == "all":
        return list(range(count))
    if int(volume_index) >= count:
        raise ItemError(VOLUME_INDEX_OUT_OF_RANGE, f"{name} has {count} volumes; volume_index {volume_index} is past the last (0-based)")
    return [int(volume_index)]


def _header_voxels(path: Path) -> int | None:
    """Voxels (all components and volumes) a volume file declares, from its header alone."""
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
        return int(np.prod(reader.GetSize(), dtype=np.int64)) * reader.GetNumberOfComponents()
    except RuntimeError:
        pass
    if path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel as nib

        try:
            return int(np.prod(nib.load(str(path)).shape, dtype=np.int64))
        except Exception:  # noqa: BLE001 - the reader says what is wrong
            return None
    return None


def check_voxels(count: int, limit: int, name: str) -> None:
    if count > limit:
        raise ItemError(DECOMPRESSION_BOMB, f"{name} declares {count:,} voxels, over the limit of {limit:,} (max_voxels)")


def non_finite_detail(values: np.ndarray) -> str | None:
    """How many values are NaN or infinite ("3 of 960 voxels: 2 NaN, 1 +inf"); None when all are finite
    (integer arrays always are)."""
    if values.dtype.kind not in "fc":
        return None
    bad = ~np.isfinite(values)
    count = int(np.count_nonzero(bad))
    if not count:
        return None
    kinds = [(int(np.count_nonzero(np.isnan(values))), "NaN"), (int(np.count_nonzero(np.isposinf(values))), "+inf"),
             (int(np.count_nonzero(np.isneginf(values))), "-inf")]
    return f"{count:,} of {values.size:,} voxels are non-finite ({', '.join(f'{n:,} {name}' for n, name in kinds if n)})"


def _stored_non_finite(path: Path, picks: list[int | None]) -> tuple[int | None, str] | None:
    """NaN or infinite values as a NIfTI file stores them, read through nibabel: SimpleITK's NIfTI reader
    turns them into 0, so its array cannot show them. Only float (and complex) files are read, and of a
    4D file only the volumes picked; (volume index, detail) of the first volume holding any."""
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        return None
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if img.get_data_dtype().kind not in "fc":
            return None
        # one volume of a 4D file is sliced from the file; several are read in one pass (each slice of a
        # .nii.gz decompresses from its start: 100 volumes one by one took 27 s, all at once 0.5 s)
        whole = np.asarray(img.dataobj) if len(img.shape) >= 4 and len([t for t in picks if t is not None]) > 1 else None
        for t in picks:
            if t is None or len(img.shape) < 4:
                values = np.asarray(img.dataobj)
            else:
                values = whole[..., t] if whole is not None else np.asarray(img.dataobj[..., t])
            detail = non_finite_detail(values)
            if detail:
                return t, detail
    except ItemError:
        raise
    except Exception:  # noqa: BLE001 - a file nibabel cannot read; SimpleITK already read it
        return None
    return None


def _check_finite(path: Path, volumes: list[tuple[int | None, sitk.Image]]) -> None:
    """A volume with a NaN or infinite voxel, in the values as stored, is quarantined as
    `non_finite_voxels` (a cast to 8 bits would silently make them 0 or 255)."""
    found = _stored_non_finite(path, [t for t, _ in volumes])
    for t, image in volumes:
        if found is not None:
            break
        detail = non_finite_detail(sitk.GetArrayViewFromImage(image))
        found = (t, detail) if detail else None
    if found is not None:
        t, detail = found
        raise ItemError(NON_FINITE_VOXELS, f"{path.name}{'' if t is None else f' volume {t}'}: {detail}")


def read_volumes(path: Path, volume_index: str | int | None = None, max_voxels: int = MAX_VOXELS) -> list[tuple[int | None, sitk.Image]]:
    """3D volumes in the LPS patient frame: array axes (z, y, x) run toward Superior, Posterior, Left,
    so an axial slice shows the patient's right on the image's left (radiological convention).
    A 3D file gives one volume (index None); a 4D file the ones `volume_index` picks, each with its
    index (without the key it is rejected with that hint). A volume holding NaN or infinite voxels is
    rejected as `non_finite_voxels`, with their count."""
    volumes = _read_volumes(path, volume_index, max_voxels)
    _check_finite(path, volumes)
    return volumes


def _read_volumes(path: Path, volume_index: str | int | None, max_voxels: int) -> list[tuple[int | None, sitk.Image]]:
    check_voxels(_header_voxels(path) or 0, max_voxels, path.name)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        image = _nibabel_volume(path) if path.name.lower().endswith((".nii", ".nii.gz")) else None
        if image is None:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
            raise ItemError(UNREADABLE, f"{path.name}: {first[:200]}") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ItemError(UNSUPPORTED_PIXEL_TYPE, f"{path.name} has {image.GetNumberOfComponentsPerPixel()} components per voxel")
    if image.GetDimension() == 4 and image.GetSize()[3] == 1:
        image = sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])
    if image.GetDimension() == 3:
        return [(None, sitk.DICOMOrient(image, "LPS"))]
    if image.GetDimension() != 4:
        raise ItemError(UNSUPPORTED_DIMENSION, f"{path.name} has {image.GetDimension()} dimensions, expected 3 (or 4 with volume_index)")
    size = image.GetSize()
    volumes = pick_volumes(size[3], volume_index, path.name)
    return [(t, sitk.DICOMOrient(sitk.Extract(image, [*size[:3], 0], [0, 0, 0, t]), "LPS")) for t in volumes]


def read_volume(path: Path) -> sitk.Image:
    """One 3D volume in the LPS frame (see `read_volumes`); a 4D file is rejected with the hint."""
    return read_volumes(path)[0][1]


def align_labels(labels: sitk.Image, image: sitk.Image, name: str) -> np.ndarray:
    """The label volume on the image's voxel grid; resampled (nearest) when the geometry differs."""
    same = (
        labels.GetSize() == image.GetSize()
        and np.allclose(labels.GetSpacing(), image.GetSpacing(), rtol=1e-3)
        and np.allclose(labels.GetOrigin(), image.GetOrigin(), atol=1e-2)
        and np.allclose(labels.GetDirection(), image.GetDirection(), atol=1e-3)
    )
    before = int(np.count_nonzero(sitk.GetArrayViewFromImage(labels)))
    if not same:
        labels = sitk.Resample(labels, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, labels.GetPixelID())
    array = sitk.GetArrayFromImage(labels).astype(np.int64)
    if before and not np.count_nonzero(array):
        raise ItemError(MASK_GEOMETRY_MISMATCH, f"{name} does not overlap its image in patient space")
    return array


def _read_without_preamble(path: Path) -> pydicom.Dataset:
    """Older files lack the 128-byte preamble; accept them only if they parse to a real object."""
    try:
        ds = pydicom.dcmread(path, force=True)
        if "SOPClassUID" in ds or "Modality" in ds:
            return ds
    except Exception:  # noqa: BLE001, S110 - forced parsing of junk raises anything
        pass
    raise ItemError(UNREADABLE, f"{path.name}: not a readable DICOM file (no DICOM header or known elements)")


def dicom_voxels(ds: pydicom.Dataset) -> int:
    """Samples the pixel data declares: rows x columns x frames x samples per pixel."""
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0) * frames * int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError) as exc:
        raise ItemError(UNREADABLE, f"image size in the header cannot be parsed ({exc})") from None


def read_dicom(path: Path, allow_burned_in: bool = False, max_voxels: int = MAX_VOXELS) -> tuple[np.ndarray, pydicom.Dataset]:
    """Stored values through the Modality LUT (RescaleSlope/Intercept); colour converted to RGB.
    Multi-frame objects keep their frames first: (frames, rows, cols[, 3])."""
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        ds = _read_without_preamble(path)
    except (OSError, EOFError, ValueError) as exc:
        raise ItemError(UNREADABLE, f"{path.name}: not a readable DICOM file ({exc})") from None
    if "PixelData" not in ds:
        raise ItemError(NO_PIXEL_DATA, f"{path.name} is a {ds.get('Modality', 'DICOM')} object without pixel data")
    check_voxels(dicom_voxels(ds), max_voxels, path.name)
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES" and not allow_burned_in:
        raise ItemError(BURNED_IN_ANNOTATION, f"{path.name} declares burned-in annotation (text in the pixels)")
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - decoder plugins raise many types
        syntax = ds.file_meta.get("TransferSyntaxUID") if "file_meta" in dir(ds) else None
        if syntax is not None and syntax.is_compressed:
            raise ItemError(UNSUPPORTED_TRANSFER_SYNTAX, f"{path.name}: {syntax.name}: {str(exc).splitlines()[0][:200]}") from None
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        if "less than expected" in message or "truncated" in message.lower():
            reason = TRUNCATED
        elif "missing required element" in message.lower() or "transfer syntax" in message.lower():
            reason = INCOMPLETE_HEADER  # the pixel module or the file meta lacks what decoding needs
        else:
            reason = UNDECODABLE_PIXELS
        raise ItemError(reason, f"{path.name}: pixel data cannot be read ({message})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        return np.asarray(apply_color_lut(pixels, ds)), ds
    if photometric == "RGB" or photometric.startswith("YBR"):  # pydicom 3 returns YBR already as RGB
        return np.asarray(pixels), ds
    return np.asarray(apply_modality_lut(pixels, ds), dtype=np.float32), ds
