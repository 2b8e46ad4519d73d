"""The descriptions stage: one generator interface, three backends, a cache, and on every row its
faithfulness and completeness (`describe/faithfulness`).

A generator takes a batch of (facts, image PNG bytes or None) and returns, per image, `{text, facets,
cited_passages, missing_facets, usage, error}`; `name`, `model_id`, `prompt_version` and `params`
describe it. `grounded` needs no image; the model backends get the normalized image with each ROI's box
drawn on a copy. Generation is cached in the work folder by (image hash, facts hash, prompt version,
backend, model id, parameters): a re-run generates nothing and writes the same rows. An image whose
generation fails is quarantined (`generator_error`) and the partition goes on."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Protocol

import polars as pl

from medtrinity_core.describe.facts import Facts, image_facts
from medtrinity_core.describe.faithfulness import SCORER_VERSION, score
from medtrinity_core.describe.faithfulness.lexicon import lexicon
from medtrinity_core.reasons import GENERATOR_ERROR
from medtrinity_core.records import DESCRIPTIONS, FACET_NAMES, QUARANTINE, frame, quarantine_row
from medtrinity_core.sources.schema import GeneratorSpec, SourceConfig
from medtrinity_core.storage import Workdir, atomic_write_bytes


class Generator(Protocol):
    name: str
    model_id: str | None
    prompt_version: str
    params: str  # JSON of the parameters that change the output
    needs_image: bool

    def generate(self, batch: list[tuple[Facts, bytes | None]]) -> list[dict]: ...


@lru_cache(maxsize=8)
def make_generator(spec: GeneratorSpec) -> Generator:
    """One generator per configuration and process (a model loads once)."""
    if spec.backend == "grounded":
        from medtrinity_core.describe.grounded import GroundedGenerator

        return GroundedGenerator()
    if spec.backend == "openai":
        from medtrinity_core.describe.openai_backend import OpenAIGenerator

        return OpenAIGenerator(spec)
    from medtrinity_core.describe.transformers_backend import TransformersGenerator

    return TransformersGenerator(spec)


def prompt_version_of(spec: GeneratorSpec) -> str:
    """The template (grounded) or prompt file, with its content hash, without loading a model."""
    if spec.backend == "grounded":
        from medtrinity_core.describe.grounded import TEMPLATE_VERSION

        return TEMPLATE_VERSION
    from medtrinity_core.describe.prompts import load_prompt

    return load_prompt(spec.prompt).version


def boxed_png(workdir: Workdir, image: dict, rois: list[dict]) -> bytes:
    """The normalized image, RGB, with each ROI's box drawn on a copy: what a model is shown."""
    from PIL import Image, ImageDraw

    with Image.open(workdir.resolve(image["image_uri"])) as img:
        canvas = img.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for roi in rois:
        draw.rectangle([roi["x0"], roi["y0"], roi["x1"] - 1, roi["y1"] - 1], outline=(255, 255, 0), width=max(1, max(canvas.size) // 256))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def cache_key(generator: Generator, image: dict, facts: Facts) -> str:
    parts = [image.get("image_sha256") or "", facts.digest(), generator.prompt_version, generator.name, generator.model_id or "", generator.params]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _cache_path(workdir: Workdir, key: str):
    return workdir.root / "cache" / "generations" / key[:2] / f"{key}.json"


def _quarantine(image: dict, source: SourceConfig, message: str) -> dict:
    return quarantine_row(image["item_id"], source.name, image["relpath"], "descriptions", GENERATOR_ERROR, message[:500])


def describe(source: SourceConfig, images: Iterable[dict], rois: pl.DataFrame, context: pl.DataFrame, passages: dict[str, dict],
             generator: Generator, workdir: Workdir) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """(descriptions, quarantined, counts). `passages` maps passage id to its text and metadata for (at
    least) every id in `context`."""
    rois_by_image: dict[str, list[dict]] = {}
    for roi in rois.iter_rows(named=True):
        rois_by_image.setdefault(roi["image_id"], []).append(roi)
    context_by_image = {c["image_id"]: c for c in context.iter_rows(named=True)}
    images = list(images)
    facts = {img["image_id"]: image_facts(source, img, rois_by_image.get(img["image_id"], []), context_by_image.get(img["image_id"]), passages) for img in images}
    results: dict[str, dict] = {}
    pending = []
    for img in images:
        key = cache_key(generator, img, facts[img["image_id"]])
        path = _cache_path(workdir, key)
        if path.is_file():
            results[img["image_id"]] = json.loads(path.read_text())
        else:
            pending.append((img, key))
    batch_size = getattr(generator, "batch_size", 16)
    for start in range(0, len(pending), batch_size):
        chunk = pending[start:start + batch_size]
        batch = [(facts[img["image_id"]], boxed_png(workdir, img, rois_by_image.get(img["image_id"], [])) if generator.needs_image else None) for img, _ in chunk]
        for (img, key), out in zip(chunk, generator.generate(batch)):
            results[img["image_id"]] = out
            if not out.get("error"):  # the image's hash goes with it, so a takedown finds it
                atomic_write_bytes(_cache_path(workdir, key), json.dumps({**out, "image_sha256": img.get("image_sha256")}, sort_keys=True).encode())
    rows, quarantined = [], []
    lex = lexicon(str(source.vocabulary) if source.vocabulary else None)  # the source's own words too
    for img in images:
        out = results[img["image_id"]]
        if out.get("error"):
            quarantined.append(_quarantine(img, source, out["error"]))
            continue
        s = score(facts[img["image_id"]], out["text"], out.get("facets"), lex)
        rows.append({
            "image_id": img["image_id"], "source": source.name, "text": out["text"], "facets": {k: (out.get("facets") or {}).get(k) for k in FACET_NAMES},
            "cited_passages": out.get("cited_passages") or [], "generator": generator.name, "generator_model": generator.model_id,
            "generator_params": generator.params, "template_version": generator.prompt_version, "missing_facets": out.get("missing_facets") or [],
            "faithfulness": s.faithfulness, "completeness": s.completeness, "contradictions": s.contradictions, "scorer_version": SCORER_VERSION,
            "annotation_suspect": s.annotation_suspect,
            "usage": json.dumps(out["usage"], sort_keys=True) if out.get("usage") else None,
        })
    df = frame(rows, DESCRIPTIONS)
    counts = {"generated": len(pending), "cached": len(images) - len(pending)}
    return df, frame(quarantined, QUARANTINE), counts
