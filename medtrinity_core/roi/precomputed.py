"""2D outputs of a precomputed expert, read exactly as the tools write them, as label images at the
image's original size: the rois stage resizes them to the normalized image and measures each region.

- Cellpose: `<base>_cp_masks.png` (uint16 instance ids, 0 background) or `<base>_cp_masks.tif` (uint32
  past 65,535 cells), or `<base>_seg.npy`, a pickled dict whose `masks` holds the same ids. The pickle is
  read through an allow-list (numpy arrays and dtypes, dicts, lists, tuples, numbers, strings): anything
  else (a class whose unpickling runs code) is refused unless the source sets `trust_code: true`.
- HoVer-Net: `{"mag": ..., "nuc": {"<id>": {"bbox": [[rmin, cmin], [rmax, cmax]], "centroid": [x, y],
  "contour": [[x, y], ...], "type": int | null, "type_prob": float | null}}}`; each nucleus rasterized from
  its contour (x, y, unlike the bbox's row, column); type names from `type_info.json` (`{"1": ["neopla",
  [255, 0, 0]], ...}`) or `labels`; type 0 (PanNuke's `nolabe`) is no ROI; `type_prob` is the confidence.
- CheXmask: the dataset's CSV, one row per image: `Left Lung`, `Right Lung` and `Heart` run-length encoded
  as 1-based `start length` pairs over the row-major Height x Width image; `Dice RCA (Mean)` is the
  confidence of the three.
- label_map: an integer label PNG or TIFF with the source's `labels`.
Each reader raises `ItemError` with `bad_annotation` (a file the tool would not have written: wrong keys,
shape or values) or `missing_annotation` (unreadable), naming the file.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from medtrinity_core.errors import ItemError
from medtrinity_core.reasons import BAD_ANNOTATION, MISSING_ANNOTATION
from medtrinity_core.sources.expert_outputs import chexmask_key
from medtrinity_core.sources.schema import PrecomputedExpert

CHEXMASK_STRUCTURES = (("Left Lung", "left lung"), ("Right Lung", "right lung"), ("Heart", "heart"))
CHEXMASK_CONFIDENCE = "Dice RCA (Mean)"
HOVERNET_KEYS = ("bbox", "centroid", "contour", "type", "type_prob")


@dataclass
class Output:
    """One label image of an expert's output at the image's original size. With `instances`, each id is
    one ROI (a cell, a nucleus) named and scored by `regions`; otherwise each value is a class whose
    connected components are the ROIs."""

    labels: np.ndarray  # (height, width) integers, 0 background
    regions: dict[int, tuple[str, float | None]] = field(default_factory=dict)  # id or value -> (label, confidence)
    instances: bool = False


def _bad(public: str, why: str) -> ItemError:
    return ItemError(BAD_ANNOTATION, f"expert output {public}: {why}"[:500])


def _integer_image(values: np.ndarray, public: str) -> np.ndarray:
    if values.ndim != 2:
        raise _bad(public, f"holds a {values.ndim}D array of shape {tuple(values.shape)}; a 2D image's output is one 2D label image")
    if values.dtype.kind == "f":
        if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)):
            raise _bad(public, "holds values that are not whole numbers: a label image holds ids")
    elif values.dtype.kind not in "iub":
        raise _bad(public, f"holds {values.dtype} values, not label ids")
    if values.size and values.min() < 0:
        raise _bad(public, "holds negative label ids")
    return values.astype(np.int64)


def read_label_image(path: Path, public: str) -> np.ndarray:
    """An integer image as written: PNG (uint8/uint16, palette indices), TIFF (any integer type)."""
    try:
        if path.name.lower().endswith((".tif", ".tiff")):
            import tifffile

            values = np.asarray(tifffile.imread(str(path)))
        else:
            from PIL import Image

            with Image.open(path) as img:
                if img.mode not in ("1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"):
                    raise _bad(public, f"is a {img.mode} image; a label image is single-channel integers (Cellpose writes uint16 PNG)")
                values = np.asarray(img)
    except ItemError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow and tifffile raise many kinds on a bad file
        raise ItemError(MISSING_ANNOTATION, f"expert output {public} cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]) from None
    return _integer_image(values, public)


# --- Cellpose ----------------------------------------------------------------------------------------

_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("builtins", "slice"), ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
}


class _AllowList(pickle.Unpickler):
    """Finds only numpy's array and dtype constructors (and a few plain builtins): a pickle naming any
    other global (os.system, a class of a package) is refused before anything is called."""

    def find_class(self, module: str, name: str):
        if (module, name) in _NUMPY_GLOBALS or (module.startswith("numpy.dtypes") and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed")


def read_seg_npy(path: Path, public: str, trust_code: bool) -> dict:
    """Cellpose's `_seg.npy`: `np.save` of a dict (a 0-d object array holding a pickle)."""
    from numpy.lib import format as npy

    with open(path, "rb") as fh:
        try:
            version = npy.read_magic(fh)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read_header(fh)
        except ValueError as exc:
            raise _bad(public, f"is not a .npy file ({exc})") from None
        if dtype.hasobject:
            if shape != ():
                raise _bad(public, f"holds an object array of shape {shape}; Cellpose's _seg.npy holds one dict")
            try:
                data = pickle.load(fh) if trust_code else _AllowList(fh).load()  # noqa: S301 - trust_code: the source opted in
            except pickle.UnpicklingError as exc:
                raise _bad(public, f"its pickle names {exc}: only arrays, dicts, lists, numbers and strings are read unless the source sets `trust_code: true`") from None
            except Exception as exc:  # noqa: BLE001 - a truncated or corrupt pickle raises anything
                raise _bad(public, f"its pickle cannot be read ({type(exc).__name__}: {exc})") from None
            if isinstance(data, np.ndarray) and data.shape == ():
                data = data.item()
        else:
            raise _bad(public, f"holds a plain {dtype} array; Cellpose's _seg.npy holds a dict with `masks`")
    if not isinstance(data, dict):
        raise _bad(public, f"holds a {type(data).__name__}; Cellpose's _seg.npy holds a dict with `masks`")
    if "masks" not in data:
        raise _bad(public, f"has no `masks` (its keys: {', '.join(sorted(map(str, data))[:10])})")
    return data


def cellpose(path: Path, public: str, expert: PrecomputedExpert) -> list[Output]:
    if path.name.endswith(".npy"):
        masks = np.asarray(read_seg_npy(path, public, expert.trust_code)["masks"])
        masks = _integer_image(masks, public)
    else:
        masks = read_label_image(path, public)
    ids = np.unique(masks[masks != 0])
    return [Output(masks, {int(i): (expert.instance_label, None) for i in ids}, instances=True)]


# --- HoVer-Net -----------------------------------------------------------------------------------------

def _type_info(path: str) -> dict[int, str]:
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ItemError(MISSING_ANNOTATION, f"type_info {Path(path).name} cannot be read ({exc.strerror or exc})") from None
    return _type_info_of(path, stat.st_size, stat.st_mtime)


@lru_cache(maxsize=8)
def _type_info_of(path: str, size: int, mtime: float) -> dict[int, str]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ItemError(MISSING_ANNOTATION, f"type_info {Path(path).name} cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ItemError(BAD_ANNOTATION, f"type_info {Path(path).name} must map type ids to [name, colour]")
    out = {}
    for key, value in data.items():
        name = value[0] if isinstance(value, list) and value else value
        if not str(key).lstrip("-").isdigit() or not isinstance(name, str) or not name.strip():
            raise ItemError(BAD_ANNOTATION, f"type_info {Path(path).name}: entry {key!r} is not `\"<id>\": [name, [r, g, b]]`")
        out[int(key)] = name.strip()
    return out


def hovernet_names(root: Path, expert: PrecomputedExpert) -> dict[int, str]:
    """Type id -> name: the source's `labels` over its `type_info.json`."""
    names = _type_info(str(Path(root) / expert.type_info)) if expert.type_info else {}
    return {**names, **dict(expert.labels)}


def _number(value, what: str, public: str, nucleus: str, optional: bool = False):
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise _bad(public, f"nucleus {nucleus}: `{what}` must be a number{' or null' if optional else ''}, not {value!r}")
    return value


def hovernet(path: Path, public: str, expert: PrecomputedExpert, root: Path, shape: tuple[int, int]) -> list[Output]:
    from skimage.draw import polygon

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _bad(public, f"cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("nuc"), dict):
        raise _bad(public, f"has no `nuc` mapping (keys: {', '.join(sorted(data)) if isinstance(data, dict) else type(data).__name__}); HoVer-Net writes {{\"mag\": ..., \"nuc\": {{...}}}}")
    names = hovernet_names(root, expert)
    height, width = shape
    labels = np.zeros(shape, np.int64)
    regions: dict[int, tuple[str, float | None]] = {}
    seen: set[int] = set()
    for number, (key, nucleus) in enumerate(data["nuc"].items(), start=1):  # drawn as 1..N: ids may have gaps of any size
        if not isinstance(nucleus, dict) or not all(k in nucleus for k in ("contour", "type")):
            missing = [k for k in HOVERNET_KEYS if not isinstance(nucleus, dict) or k not in nucleus]
            raise _bad(public, f"nucleus {key} lacks {', '.join(missing)}")
        if not str(key).isdigit() or int(key) < 1:
            raise _bad(public, f"nucleus id {key!r} is not a whole number from 1")
        if int(key) in seen:
            raise _bad(public, f"nucleus id {key!r} repeats another nucleus' id")
        seen.add(int(key))
        kind = _number(nucleus["type"], "type", public, key, optional=True)
        if kind is not None and kind != int(kind):
            raise _bad(public, f"nucleus {key}: `type` must be a whole number, not {kind!r}")
        if kind == 0:
            continue  # PanNuke's `nolabe`: no nucleus type, no ROI
        name = "nucleus" if kind is None else names.get(int(kind))
        if name is None:
            raise _bad(public, f"nucleus {key} has type {kind}, which neither type_info nor labels names")
        contour = np.asarray(nucleus["contour"], dtype=np.float64) if isinstance(nucleus["contour"], list) else np.zeros((0,))
        if contour.ndim != 2 or contour.shape[1] != 2 or len(contour) < 3:
            raise _bad(public, f"nucleus {key}: `contour` must be a list of at least three [x, y] points")
        xs, ys = contour[:, 0], contour[:, 1]
        if xs.min() < -0.5 or ys.min() < -0.5 or xs.max() > width - 0.5 or ys.max() > height - 0.5:
            raise _bad(public, f"nucleus {key}: its contour reaches ({xs.max():.0f}, {ys.max():.0f}) (x, y), outside the {width}x{height} image")
        rr, cc = polygon(ys, xs, shape)
        rr_edge, cc_edge = np.clip(np.round(ys).astype(int), 0, height - 1), np.clip(np.round(xs).astype(int), 0, width - 1)
        labels[rr, cc] = number
        labels[rr_edge, cc_edge] = number  # the contour itself is the nucleus' edge
        confidence = _number(nucleus.get("type_prob"), "type_prob", public, key, optional=True)
        regions[number] = (name, None if confidence is None else float(confidence))
    present = set(np.unique(labels[labels != 0]).tolist())
    return [Output(labels, {k: v for k, v in regions.items() if k in present}, instances=True)]


# --- CheXmask ------------------------------------------------------------------------------------------

@lru_cache(maxsize=2)
def _chexmask_table(path: str, size: int, mtime: float, column: str):
    import polars as pl

    table = pl.read_csv(path, schema_overrides={column: pl.String}, infer_schema_length=0)
    rows: dict = {}
    for row in table.iter_rows(named=True):
        if row[column] is not None:
            rows[row[column]] = None if row[column] in rows else row  # a repeated id names no one row
    return rows


def decode_rle(rle: str, height: int, width: int, public: str, what: str) -> np.ndarray:
    """CheXmask's run-length code: space-separated 1-based `start length` pairs over the row-major image."""
    try:
        runs = np.array([int(v) for v in str(rle).split()], dtype=np.int64)
    except ValueError:
        raise _bad(public, f"{what}: the run-length code holds something other than whole numbers") from None
    if runs.size % 2:
        raise _bad(public, f"{what}: the run-length code has an odd count of numbers ({runs.size}); it is start-length pairs")
    starts, lengths = runs[0::2] - 1, runs[1::2]
    if runs.size and (starts.min() < 0 or lengths.min() < 0 or (starts + lengths).max() > height * width):
        raise _bad(public, f"{what}: a run lies outside the {width}x{height} image (starts are 1-based)")
    flat = np.zeros(height * width, dtype=bool)
    for start, length in zip(starts.tolist(), lengths.tolist()):
        flat[start : start + length] = True
    return flat.reshape(height, width)


def chexmask(path: Path, public: str, expert: PrecomputedExpert, image_relpath: str, shape: tuple[int, int]) -> list[Output]:
    stat = path.stat()
    try:
        rows = _chexmask_table(str(path), stat.st_size, stat.st_mtime, expert.id_column)
    except Exception as exc:  # noqa: BLE001 - polars raises its own errors on a ragged or unquoted CSV
        raise _bad(public, f"cannot be read as a CheXmask CSV ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    key = chexmask_key(image_relpath, frozenset(rows))
    if key is None:
        raise ItemError(MISSING_ANNOTATION, f"{image_relpath}: no row of {public} has {expert.id_column} matching it")
    row = rows[key]
    if row is None:
        raise _bad(public, f"several of its rows have the {expert.id_column} that {image_relpath} matches: one row per image")
    missing = [c for c in ("Height", "Width", CHEXMASK_CONFIDENCE, *(c for c, _ in CHEXMASK_STRUCTURES)) if c not in row]
    if missing:
        raise _bad(public, f"has no column {', '.join(repr(c) for c in missing)} (CheXmask writes Image ID, Dice RCA (Max), Dice RCA (Mean), Landmarks, "
                           "Left Lung, Right Lung, Heart, Height, Width)")
    try:
        height, width = int(float(row["Height"])), int(float(row["Width"]))
    except (TypeError, ValueError, OverflowError):
        raise _bad(public, f"the image's row: Height and Width must be whole numbers, not {row['Height']!r} x {row['Width']!r}") from None
    if (height, width) != tuple(shape):
        raise _bad(public, f"the row of {image_relpath} is {width}x{height}, the image is {shape[1]}x{shape[0]}: an expert's output must have its image's size")
    confidence = row[CHEXMASK_CONFIDENCE]
    try:
        confidence = None if confidence in (None, "") else float(confidence)
    except ValueError:
        raise _bad(public, f"the image's row: {CHEXMASK_CONFIDENCE} must be a number, not {confidence!r}") from None
    out = []
    for column, name in CHEXMASK_STRUCTURES:
        if row[column] in (None, ""):
            continue
        mask = decode_rle(row[column], height, width, public, f"the image's row, {column}")
        out.append(Output(mask.astype(np.int64), {1: (name, confidence)}))
    return out


# --- label maps, and the one entry point -----------------------------------------------------------------

def label_map(path: Path, public: str, expert: PrecomputedExpert) -> list[Output]:
    values = read_label_image(path, public)
    names = dict(expert.labels)
    return [Output(np.where(np.isin(values, list(names)), values, 0), {v: (n, None) for v, n in names.items()})]


def read_output(expert: PrecomputedExpert, path: Path, public: str, root: Path, image_relpath: str, shape: tuple[int, int]) -> list[Output]:
    """The expert's output for one 2D image of `shape` (height, width) at its original size; an output of
    another size is refused, naming both."""
    if expert.format == "chexmask":
        outputs = chexmask(path, public, expert, image_relpath, shape)
    elif expert.format == "hovernet":
        outputs = hovernet(path, public, expert, root, shape)
    elif expert.format == "cellpose":
        outputs = cellpose(path, public, expert)
    else:
        outputs = label_map(path, public, expert)
    for output in outputs:
        if output.labels.shape != tuple(shape):
            h, w = output.labels.shape
            raise _bad(public, f"is {w}x{h}, its image {image_relpath} is {shape[1]}x{shape[0]}: an expert's output must have its image's size")
    return outputs
