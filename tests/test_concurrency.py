"""Two runs on one work folder at once (the UI and the command line): one salt, and an image that two
shards race for is kept once."""

from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import numpy as np
from PIL import Image


def _normalize_shard(root: str, workdir: str, shard: str, relpath: str, barrier, out) -> None:
    os.environ.pop("MEDTRINITY_SALT", None)  # the salt comes from the work folder, as in a real deployment
    from medtrinity_core.imaging.dedup import deduplicate
    from medtrinity_core.imaging.normalize import normalize
    from medtrinity_core.sources.inventory import inventory, shard_items
    from medtrinity_core.sources.schema import SourceConfig
    from medtrinity_core.sources.shards import plan_entries
    from medtrinity_core.storage import Workdir

    src = SourceConfig(name="race", modality="dermoscopy", license="LicenseRef-test", root=Path(root), layout="labeled_images",
                       images=r"(?P<label>[a-z]+)/.+\.png")
    wd = Workdir.at(workdir)
    entries = plan_entries(src)
    items, _ = shard_items(src, entries.filter(entries["relpath"] == relpath))
    raw, _ = inventory(src, items)
    images, _ = normalize(src, raw.iter_rows(named=True), wd)
    barrier.wait(timeout=60)  # both processes reach the shared state together
    salt = wd.salt()
    images, _ = deduplicate(images, wd, src.name, shard, src.near_distance, None)
    out.put((shard, salt, images["duplicate_kind"].to_list(), images["duplicate_of"].to_list(), images["image_id"].to_list()))


def test_two_shards_racing_for_one_image_keep_one_copy_and_share_one_salt(tmp_path):
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    for folder in ("nevus", "melanoma"):
        (tmp_path / "src" / folder).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "src" / folder / "img.png")  # the same image in two shards
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    jobs = [ctx.Process(target=_normalize_shard, args=(str(tmp_path / "src"), str(tmp_path / "wd"), f"base-000{i}", rel, barrier, out))
            for i, rel in enumerate(("nevus/img.png", "melanoma/img.png"))]
    for job in jobs:
        job.start()
    results = sorted(out.get(timeout=120) for _ in jobs)
    for job in jobs:
        job.join(timeout=60)
        assert job.exitcode == 0
    salts = {salt for _, salt, _, _, _ in results}
    assert len(salts) == 1 and (tmp_path / "wd" / "secret" / "salt").read_text().strip() in salts
    kinds = [kind[0] for _, _, kind, _, _ in results]
    assert sorted(kinds, key=str) == sorted([None, "exact"], key=str)  # exactly one copy kept
    kept = next(r for r in results if r[2][0] is None)
    duplicate = next(r for r in results if r[2][0] == "exact")
    assert duplicate[3][0] == kept[4][0]  # the other names the copy committed first
