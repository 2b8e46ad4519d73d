"""Shared benchmark plumbing: machine description, peak memory, the closing JSON line."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path


def machine() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


def peak_in_subprocess(script: str, *args: str) -> tuple[float, float]:
    """(peak RSS before the work, i.e. imports and set-up; peak RSS after it) of a fresh process:
    peak RSS only grows, so each memory point gets its own process."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    before, after = out.stdout.strip().splitlines()[-1].split()
    return float(before), float(after)


def table(rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")


def finish(bench: str, items: int, rate: float, floor_rate: float, memory: tuple[tuple[float, float], tuple[float, float]], **extra) -> None:
    """The closing JSON line, with the keys every benchmark gives."""
    (base_small, small), (base_large, large) = memory
    figures = {
        "bench": bench,
        "items": items,
        "items_per_s": round(rate, 2),
        "floor_items_per_s": round(floor_rate, 2),
        "ratio_to_floor": round(rate / floor_rate, 3),
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_mb_small": small,
        "peak_rss_mb_large": large,
        "peak_rss_mb_setup": max(base_small, base_large),
        "machine": machine(),
        **extra,
    }
    print(json.dumps(figures, sort_keys=True))


def entry(main, memory_point) -> None:
    """`script` runs the benchmark; `script --memory N` is one memory point in its own process."""
    if len(sys.argv) == 3 and sys.argv[1] == "--memory":
        memory_point(int(sys.argv[2]))
    else:
        main()


def image_masks_sources(path: Path, name: str, modality: str, root: str, images: str, label: str, shard_size: int | None = None) -> Path:
    """A sources file with one `image_masks` source whose masks are `masks/{id}.png` (synthetic benchmark data)."""
    shard = f"\n    shard_size: {shard_size}" if shard_size else ""
    path.write_text(
        f"version: 1\nsources:\n  - name: {name}\n    modality: {modality}\n    license: CC0-1.0\n    root: {root}\n"
        f"    layout: image_masks{shard}\n    images: '{images}'\n    masks:\n      - pattern: 'masks/{{id}}\\.png'\n        label: {label}\n")
    return path
