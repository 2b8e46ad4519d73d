"""bench-sensor: one tick of the landing-zone sensor over a landing zone of 100,000 new files (100 ready
drops of 500 image/mask pairs, as Kvasir-SEG lays them out), against a floor of `os.scandir` walking the
same tree. A tick plans at most DROPS_PER_TICK whole drops; the table shows the first tick and the ticks
needed for all of them. Target: one tick under 10 s."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import finish, image_masks_sources, peak_rss_mb, table

DROPS, PAIRS = 100, 500


def build_zone(root: Path) -> Path:
    landing = root / "landing"
    payload = b"\x89PNG not decoded by planning"
    for d in range(DROPS):
        drop = landing / "bench-src" / f"drop{d:03d}"
        (drop / "images").mkdir(parents=True)
        (drop / "masks").mkdir()
        for i in range(PAIRS):
            (drop / "images" / f"img{i:04d}.png").write_bytes(payload)
            (drop / "masks" / f"img{i:04d}.png").write_bytes(payload)
        (drop / "_READY").touch()
    (root / "base").mkdir()
    sources = image_masks_sources(root / "sources.yaml", "bench-src", "endoscopy", "base", r"images/(?P<id>[^/]+)\.png", "polyp")
    return sources


def scandir_floor(root: Path) -> int:
    count, stack = 0, [str(root)]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    count += 1
    return count


def main() -> None:
    import dagster as dg

    from medtrinity_core.config import load_sources
    from medtrinity_dagster.build import build_definitions
    from medtrinity_dagster.sensors import DROPS_PER_TICK

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        sources_file = build_zone(tmp)
        build_s = time.perf_counter() - start
        landing = tmp / "landing"
        start = time.perf_counter()
        files = scandir_floor(landing)
        floor_s = time.perf_counter() - start
        defs = build_definitions(load_sources(sources_file), str(tmp / "wd"), landing=str(landing))
        sensor = defs.get_sensor_def("landing_zone")
        instance = dg.DagsterInstance.ephemeral()
        cursor, ticks, runs = None, [], 0
        while True:
            start = time.perf_counter()
            with dg.build_sensor_context(cursor=cursor, instance=instance, resources=defs.resources) as context:
                result = sensor(context)
            ticks.append(time.perf_counter() - start)
            if not result.run_requests:
                break
            runs += len(result.run_requests)
            cursor = result.cursor
    planned_per_tick = DROPS_PER_TICK * PAIRS * 2
    first = ticks[0]
    print(f"bench-sensor: {files} files in {DROPS} ready drops ({build_s:.0f} s to write them)")
    table([
        ("files in the landing zone", f"{files}"),
        (f"first tick (plans {DROPS_PER_TICK} whole drops, {planned_per_tick} files)", f"{first:.2f} s (target < 10 s)"),
        ("ticks until every drop is planned", f"{len(ticks) - 1} (+1 with nothing to do: {ticks[-1]:.3f} s)"),
        ("all ticks together", f"{sum(ticks):.1f} s for {runs} run requests"),
        ("floor: os.scandir over the whole tree", f"{floor_s:.2f} s"),
        ("files planned per second, floor files listed per second", f"{planned_per_tick / first:.0f}, {files / floor_s:.0f}"),
    ])
    rss = peak_rss_mb()
    finish("sensor", files, planned_per_tick / first, files / floor_s, ((rss, rss), (rss, rss)), files=files, tick_seconds=round(first, 3),
           ticks=len(ticks) - 1, all_ticks_seconds=round(sum(ticks), 2), floor_seconds=round(floor_s, 3))


if __name__ == "__main__":
    main()
