"""Shared benchmark plumbing: machine description, peak memory, the closing JSON line."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys


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


def finish(figures: dict) -> None:
    print(json.dumps(figures, sort_keys=True))
