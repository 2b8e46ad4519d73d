"""Overlay previews: the image with each ROI's contour, box and label, for eyes in the UI and on disk."""

from __future__ import annotations

import base64

import numpy as np
import polars as pl
from PIL import Image, ImageDraw
from scipy import ndimage

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.roi import rle
from medtrinity_core.storage import (
    Workdir,
    atomic_write_bytes,
    encode_png,
    read_parquet,
)

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230)]


def overlay(image: np.ndarray, rois: list[dict]) -> np.ndarray:
    """RGB pixels: contours from each ROI's RLE, its box, and its label in the label's colour."""
    rgb = np.stack([image] * 3, axis=2) if image.ndim == 2 else image.copy()
    height, width = rgb.shape[:2]
    colours = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted({r["label"] for r in rois}))}
    for roi in rois:
        mask = rle.decode(roi["rle_counts"], height, width)
        edge = mask & ~ndimage.binary_erosion(mask)
        rgb[edge] = colours[roi["label"]]
    canvas = Image.fromarray(rgb)
    draw = ImageDraw.Draw(canvas)
    for roi in rois:
        colour = colours[roi["label"]]
        draw.rectangle([roi["x0"], roi["y0"], roi["x1"] - 1, roi["y1"] - 1], outline=colour)
        draw.text((roi["x0"] + 2, max(roi["y0"] - 12, 0)), roi["label"], fill=colour)
    return np.asarray(canvas)


def preview_png(workdir: Workdir, image_row: dict, rois: list[dict], max_side: int | None = None) -> bytes:
    pixels = overlay(workdir.read_png(image_row["image_uri"]), rois)
    if max_side and max(pixels.shape[:2]) > max_side:
        img = Image.fromarray(pixels)
        img.thumbnail((max_side, max_side))
        pixels = np.asarray(img)
    return encode_png(pixels)


def write_previews(workdir: Workdir, source: str, shard: str, images: pl.DataFrame, rois: pl.DataFrame, count: int, max_side: int) -> list[tuple[str, bytes, str]]:
    """Overlays of the first `count` images with ROIs, written under previews/: (path, png, title)."""
    out = []
    for image_id in rois["image_id"].unique(maintain_order=True).head(count).to_list():
        image_row = images.filter(pl.col("image_id") == image_id).row(0, named=True)
        png = preview_png(workdir, image_row, list(rois.filter(pl.col("image_id") == image_id).iter_rows(named=True)), max_side)
        path = workdir.root / "previews" / source / shard / f"{image_id}.png"
        atomic_write_bytes(path, png)
        out.append((str(path), png, f"{image_id} ({image_row['relpath']})"))
    return out


def markdown_image(png: bytes, title: str) -> str:
    """An inline image for Dagster's markdown metadata."""
    return f"**{title}**\n\n![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def find_image(workdir: Workdir, image_id: str) -> tuple[dict, list[dict]]:
    """An image's normalized row and its ROIs, searched across every source and shard."""
    for path in sorted(workdir.manifests.glob("*/normalized/*.parquet"), key=str) if workdir.manifests.exists() else []:
        hit = read_parquet(path).filter(pl.col("image_id") == image_id)
        if hit.height:
            rois_path = path.parent.parent / "rois" / path.name
            rois = read_parquet(rois_path).filter(pl.col("image_id") == image_id) if rois_path.exists() else pl.DataFrame()
            return hit.row(0, named=True), list(rois.iter_rows(named=True))
    raise MedtrinityError(f"image {image_id} is not in any normalized manifest under {workdir.root}")
