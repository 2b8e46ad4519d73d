"""bench-generate: how fast descriptions are written and scored, and how well the `openai` client uses
concurrency.

- Grounded descriptions per second over the measured facts of demo images (CT organs, polyps, nuclei;
  repeated under new image ids to 2,000), against a floor that formats the same facts into one fixed
  string per image.
- Faithfulness scoring, rows per second.
- The `openai` backend against a local chat-completions server that answers after 200 ms, each request
  carrying a real 512-px demo image with its boxes drawn: requests per second at concurrency 1 and 16
  (`openai_rps_c16` should be at least 12 x `openai_rps_c1`: the client's concurrency is what is measured).
- A tiny LLaVA (built from small configs, random weights) generating on the CPU: tokens per second, for
  information only.
Memory points: grounded generation and scoring of 200 and 2,000 descriptions, each in its own process."""

from __future__ import annotations

import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import entry, finish, peak_in_subprocess, peak_rss_mb, table

from medtrinity_core.config import load_sources
from medtrinity_core.describe.facts import image_facts
from medtrinity_core.describe.faithfulness import score
from medtrinity_core.describe.grounded import GroundedGenerator
from medtrinity_core.describe.stage import boxed_png
from medtrinity_core.imaging.normalize import normalize
from medtrinity_core.roi.extract import extract_rois
from medtrinity_core.sources.discover import discover
from medtrinity_core.sources.inventory import inventory
from medtrinity_core.sources.schema import GeneratorSpec
from medtrinity_core.storage import Workdir

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("sam-med2d-ct", "kvasir-seg", "dsb2018", "biomedparse-pathology")
N = 2000


def demo_images(wd: Workdir) -> list[tuple[object, dict, list[dict]]]:
    """(source, normalized image row, its ROIs) for the demo images of SOURCES."""
    out = []
    for src in load_sources(REPO / "examples" / "sources.yaml").sources:
        if src.name not in SOURCES:
            continue
        items, _ = discover(src)
        raw, _ = inventory(src, items)
        images, _ = normalize(src, raw.iter_rows(named=True), wd)
        rois, _ = extract_rois(src, images.iter_rows(named=True), wd)
        for image in images.iter_rows(named=True):
            out.append((src, image, rois.filter(rois["image_id"] == image["image_id"]).to_dicts()))
    return out


def facts_list(wd: Workdir, n: int):
    base = [image_facts(src, image, rois) for src, image, rois in demo_images(wd)]
    return [replace(base[i % len(base)], image_id=f"{base[i % len(base)].image_id}-{i}") for i in range(n)]


def floor_text(facts) -> str:
    """The plainest rendering of the same facts: one fixed string."""
    parts = [f"{facts.modality} {facts.body_region or ''}."]
    parts += [f"{f.label}: {f.count} {f.location} {f.size_class} {f.area_pct}% {f.shape} {f.contrast} {f.texture}." for f in facts.labels]
    parts += [f"{r.subject} {r.verb} {r.other} ({r.apart})." for r in facts.relations]
    return " ".join(parts)


def _serve(urls) -> None:
    """A chat-completions server answering after 200 ms, in its own process (so its JSON decoding does
    not compete with the client for one interpreter)."""
    from tests.test_openai_backend import ScriptedServer

    server = ScriptedServer()
    server.delay = 0.2
    urls.put(server.url)
    while True:
        time.sleep(3600)


def openai_rps(url: str, png: bytes, facts, concurrency: int, requests: int) -> float:
    from medtrinity_core.describe.openai_backend import OpenAIGenerator

    gen = OpenAIGenerator(GeneratorSpec(backend="openai", url=url, model="bench", concurrency=concurrency, retries=0))
    gen.generate([(facts, png)])  # connect and warm up
    batch = [(replace(facts, image_id=f"{facts.image_id}-{i}"), png) for i in range(requests)]
    start = time.perf_counter()
    out = gen.generate(batch)
    elapsed = time.perf_counter() - start
    assert all(o["error"] is None for o in out), out[0]
    return requests / elapsed


def tiny_tokens_per_s(facts, png: bytes) -> float:
    from medtrinity_core.describe.transformers_backend import TransformersGenerator
    from tests.test_transformers_backend import build_tiny_llava

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "tiny-llava"
        build_tiny_llava(folder)
        gen = TransformersGenerator(GeneratorSpec(backend="transformers", model=str(folder), max_new_tokens=64, batch_size=4))
        batch = [(replace(facts, image_id=f"t{i}"), png) for i in range(4)]
        gen.generate(batch[:1])  # load and warm up
        start = time.perf_counter()
        out = gen.generate(batch)
        elapsed = time.perf_counter() - start
    return sum(o["usage"]["completion_tokens"] for o in out) / elapsed


def main() -> None:
    import multiprocessing

    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        wd = Workdir.at(tmp).ensure()
        facts = facts_list(wd, N)
        grounded = GroundedGenerator()
        grounded.generate([(f, None) for f in facts[:50]])  # warm-up
        [floor_text(f) for f in facts[:50]]
        start = time.perf_counter()
        outputs = grounded.generate([(f, None) for f in facts])
        grounded_s = time.perf_counter() - start
        start = time.perf_counter()
        [floor_text(f) for f in facts]
        floor_s = time.perf_counter() - start
        start = time.perf_counter()
        scores = [score(f, o["text"], o["facets"]) for f, o in zip(facts, outputs)]
        score_s = time.perf_counter() - start

        src, image, rois = next((s, i, r) for s, i, r in demo_images(wd) if s.name == "kvasir-seg")
        with Image.open(wd.resolve(image["image_uri"])) as img:
            side = 512 / max(img.size)
            resized = img.convert("RGB").resize((round(img.width * side), round(img.height * side)))
        resized.save(Path(tmp) / "images" / "bench512.png")
        scaled = [{**r, **{k: round(r[k] * side) for k in ("x0", "y0", "x1", "y1")}} for r in rois]
        png = boxed_png(wd, {**image, "image_uri": "images/bench512.png"}, scaled)
        urls = multiprocessing.get_context("fork").Queue()
        server = multiprocessing.get_context("fork").Process(target=_serve, args=(urls,), daemon=True)
        server.start()
        url = urls.get(timeout=30)
        kvasir_facts = image_facts(src, image, rois)
        rps1 = openai_rps(url, png, kvasir_facts, 1, 10)
        rps16 = openai_rps(url, png, kvasir_facts, 16, 128)
        server.terminate()
        tokens_s = tiny_tokens_per_s(kvasir_facts, png)

    rate, floor_rate = N / grounded_s, N / floor_s
    small, large = peak_in_subprocess(__file__, "--memory", "200"), peak_in_subprocess(__file__, "--memory", str(N))
    print(f"bench-generate: {N} descriptions over the measured facts of {len(SOURCES)} demo sources")
    table([
        ("grounded descriptions/s", f"{rate:.0f}"),
        ("floor (facts formatted into one fixed string)/s", f"{floor_rate:.0f}"),
        ("ratio to floor", f"{rate / floor_rate:.3f}"),
        ("faithfulness scoring rows/s", f"{N / score_s:.0f}  (mean score {sum(s.faithfulness for s in scores) / N:.3f})"),
        ("openai requests/s, concurrency 1 (server answers after 200 ms)", f"{rps1:.2f}"),
        ("openai requests/s, concurrency 16", f"{rps16:.2f}  ({rps16 / rps1:.1f} x; target >= 12 x)"),
        ("request image", f"{resized.width}x{resized.height} PNG, {len(png) // 1024} KiB as a data URL"),
        ("tiny LLaVA on the CPU, tokens/s (information)", f"{tokens_s:.0f}"),
        ("peak RSS, 200 / 2,000 descriptions (own processes)", f"{small[1]:.0f} / {large[1]:.0f} MB (after set-up {max(small[0], large[0]):.0f} MB)"),
        ("peak RSS, this process", f"{peak_rss_mb():.0f} MB"),
    ])
    finish("generate", N, rate, floor_rate, (small, large), descriptions_per_s=round(rate, 1), scoring_rows_per_s=round(N / score_s, 1),
           openai_rps_c1=round(rps1, 2), openai_rps_c16=round(rps16, 2), tiny_model_tokens_per_s=round(tokens_s, 1))


def memory_point(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        wd = Workdir.at(tmp).ensure()
        facts = facts_list(wd, n)
        before = peak_rss_mb()
        outputs = GroundedGenerator().generate([(f, None) for f in facts])
        [score(f, o["text"], o["facets"]) for f, o in zip(facts, outputs)]
    print(before, peak_rss_mb())


if __name__ == "__main__":
    entry(main, memory_point)
