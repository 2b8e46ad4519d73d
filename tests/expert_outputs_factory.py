"""Writes expert output files exactly as the tools write them (key names, dtypes, file names), for tests
and `make bench-experts`:

- TotalSegmentator: one uint8 `<structure>.nii.gz` per class in a case folder (`nib.Nifti1Image(mask,
  affine)` with the input's affine), and `--ml`'s multilabel file, whose label table is the CaretExtension
  XML TotalSegmentator's `add_label_map_to_nifti` writes into a code-0 NIfTI extension;
- Cellpose: `<base>_cp_masks.png` (uint16), `<base>_cp_masks.tif` (uint32 via tifffile) and `<base>_seg.npy`
  (`np.save` of the dict `masks_flows_to_seg` writes);
- HoVer-Net: `json/<name>.json` as `run_infer` writes it (`mag`, `nuc` with `bbox` [[rmin, cmin], [rmax,
  cmax]], `centroid` [x, y], `contour` [[x, y], ...], `type`, `type_prob`) and PanNuke's `type_info.json`;
- CheXmask: a dataset's `.csv.gz` with its columns and 1-based run-length codes (its `get_RLE_from_mask`).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

PANNUKE_TYPES = {"0": ["nolabe", [0, 0, 0]], "1": ["neopla", [255, 0, 0]], "2": ["inflam", [0, 255, 0]], "3": ["connec", [0, 0, 255]],
                 "4": ["necros", [255, 255, 0]], "5": ["no-neo", [255, 165, 0]]}
COLORS = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255], [255, 128, 0], [255, 0, 128], [128, 255, 128], [0, 128, 255],
          [128, 128, 128], [185, 170, 155]]


def ras_affine(spacing=(1.0, 1.0, 2.0), origin=(-32.0, -32.0, -10.0)) -> np.ndarray:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    return affine


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray, extension_xml: str | None = None) -> Path:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    if extension_xml is not None:
        img.header.extensions.append(nib.nifti1.Nifti1Extension(0, bytes(extension_xml, "utf-8")))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def caret_xml(label_map: dict[int, str]) -> str:
    """The label table as TotalSegmentator's `add_label_map_to_nifti` writes it."""
    pre = ('<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2013-07-14T05:45:09]]></Date>   '
           '<VolumeInformation Index="0">   <LabelTable>')
    body = ""
    for key, name in label_map.items():
        rgb = COLORS[key % len(COLORS)]
        body += f'<Label Key="{key}" Red="{rgb[0] / 255}" Green="{rgb[1] / 255}" Blue="{rgb[2] / 255}" Alpha="1"><![CDATA[{name}]]></Label>\n'
    post = "  </LabelTable>  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  <VolumeType><![CDATA[Label]]></VolumeType>   </VolumeInformation></CaretExtension>"
    return pre + "\n" + body + "\n" + post + "\n              "


def ct_case(shape=(64, 64, 12)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A CT-like volume in NIfTI's RAS+ voxel order (i -> the patient's right, j -> anterior, k -> superior)
    with the liver on the patient's right (high i), the left kidney on the patient's left (low i), and a
    spleen that is not in view (all zero, as TotalSegmentator writes classes it does not find)."""
    ct = np.full(shape, -100.0, np.float32)
    liver = np.zeros(shape, np.uint8)
    liver[40:58, 20:44, 2:10] = 1
    kidney = np.zeros(shape, np.uint8)
    kidney[8:20, 28:40, 3:9] = 1
    ct[liver == 1], ct[kidney == 1] = 60.0, 30.0
    return ct, {"liver": liver, "kidney_left": kidney, "spleen": np.zeros(shape, np.uint8)}


def totalsegmentator_folder(case: Path, structures: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    for name, mask in structures.items():
        write_nifti(case / f"{name}.nii.gz", mask.astype(np.uint8), affine)
    return case


def totalsegmentator_multilabel(path: Path, structures: dict[str, np.ndarray], affine: np.ndarray) -> Path:
    names = list(structures)
    labels = np.zeros(next(iter(structures.values())).shape, np.uint8)
    for value, name in enumerate(names, start=1):
        labels[structures[name] > 0] = value
    return write_nifti(path, labels, affine, caret_xml({i + 1: n for i, n in enumerate(names)}))


def cells(shape=(96, 128), count=3) -> np.ndarray:
    """Instance ids 1..count, the first two touching (one connected blob, two cells)."""
    masks = np.zeros(shape, np.uint16)
    masks[10:30, 10:30] = 1
    masks[10:30, 30:50] = 2  # touches cell 1
    if count >= 3:
        masks[60:80, 90:115] = 3
    return masks


def cellpose_png(path: Path, masks: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(masks.astype(np.uint16)).save(path)
    return path


def cellpose_tif(path: Path, masks: np.ndarray) -> Path:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(str(path), masks.astype(np.uint32))
    return path


def cellpose_seg_npy(path: Path, masks: np.ndarray, image_name: str) -> Path:
    """The dict Cellpose's `masks_flows_to_seg` saves with `np.save`."""
    outlines = np.zeros_like(masks)
    data = {"outlines": outlines.astype(np.uint16), "masks": masks.astype(np.uint16), "chan_choose": [0, 0], "ismanual": np.zeros(int(masks.max()), bool),
            "filename": image_name, "flows": [np.zeros((*masks.shape, 3), np.uint8), np.zeros((2, *masks.shape), np.float32)], "est_diam": 30.0,
            "diameter": 30.0, "model_path": 0, "flow_threshold": 0.4, "cellprob_threshold": 0.0, "normalize_params": {"lowhigh": None, "percentile": [1.0, 99.0]},
            "restore": None, "ratio": 1.0}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, data, allow_pickle=True)
    return path


def nucleus(cx: float, cy: float, r: float, kind: int | None, prob: float | None, points: int = 16) -> dict:
    """One nucleus as HoVer-Net's json writes it: bbox row/col, centroid and contour x/y."""
    t = np.linspace(0, 2 * np.pi, points, endpoint=False)
    contour = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1).round().astype(int)
    (cmin, rmin), (cmax, rmax) = contour.min(axis=0), contour.max(axis=0) + 1
    return {"bbox": [[int(rmin), int(cmin)], [int(rmax), int(cmax)]], "centroid": [float(cx), float(cy)], "contour": contour.tolist(),
            "type_prob": prob, "type": kind}


def hovernet_json(path: Path, nuclei: dict[int, dict], mag: int | None = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"mag": mag, "nuc": {str(k): v for k, v in nuclei.items()}}, indent=4))
    return path


def type_info(path: Path) -> Path:
    path.write_text(json.dumps(PANNUKE_TYPES))
    return path


def rle(mask: np.ndarray) -> str:
    """CheXmask's `get_RLE_from_mask`: 1-based starts and lengths over the row-major flattening."""
    pixels = np.concatenate([[0], mask.flatten().astype(int), [0]])
    runs = np.where(pixels[1:] != pixels[:-1])[0] + 1
    runs[1::2] -= runs[::2]
    return " ".join(str(x) for x in runs)


def chexmask_csv(path: Path, rows: list[dict], id_column: str = "Image ID") -> Path:
    """rows: {id, left, right, heart (boolean masks), dice_mean, dice_max}; written with CheXmask's columns."""
    header = [id_column, "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung", "Right Lung", "Heart", "Height", "Width"]
    lines = [",".join(header)]
    for r in rows:
        h, w = r["left"].shape
        landmarks = '"' + json.dumps([[1, 2], [3, 4]]) + '"'
        lines.append(",".join([r["id"], str(r.get("dice_max", 0.9)), str(r["dice_mean"]), landmarks, rle(r["left"]), rle(r["right"]), rle(r["heart"]), str(h), str(w)]))
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def chest(shape=(80, 100)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A PA chest film: the patient's right lung on the image's left, the left lung on the image's right."""
    h, w = shape
    image = np.full(shape, 200, np.uint8)
    right = np.zeros(shape, bool)
    right[10:70, 8:42] = True
    left = np.zeros(shape, bool)
    left[10:70, 58:92] = True
    heart = np.zeros(shape, bool)
    heart[40:70, 40:66] = True
    image[right | left] = 60
    image[heart] = 150
    return image, {"left": left, "right": right, "heart": heart}
