"""Shared fixtures: a tiny source built from the bundled examples (plus planted bad input), and one
in-process materialization of the whole graph per test session that many tests read."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("MEDTRINITY_SALT", "test-salt")

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
KVASIR = EXAMPLES / "endoscopy" / "kvasir_seg"
SAMPLES = REPO.parent / "shared" / "samples"  # the extended corpus beside the checkout (CI lays it out)
KNOWLEDGE_INCLUDE = ["*/0000218.xml", "*/0000037_1.xml", "*/0000028_*.xml"]  # colonic polyps, colon cancer, melanoma


def through_normalized(src, wd):
    """A source's discover, raw and normalized stages in-process: (items, rejected, raw, images, quarantined)."""
    from medtrinity_core.imaging.normalize import normalize
    from medtrinity_core.sources.discover import discover
    from medtrinity_core.sources.inventory import inventory

    items, rejected = discover(src)
    raw, _ = inventory(src, items)
    images, quarantined = normalize(src, raw.iter_rows(named=True), wd)
    return items, rejected, raw, images, quarantined


def write_tiny_source(root: Path) -> Path:
    """Kvasir-SEG's three images, plus one unreadable image and one mask of the wrong shape."""
    data = root / "kvasir"
    shutil.copytree(KVASIR, data)
    (data / "images" / "broken.jpg").write_bytes(b"this is not a jpeg")
    Image.new("L", (10, 10)).save(data / "masks" / "broken.jpg")
    Image.fromarray(np.full((64, 48, 3), 120, np.uint8)).save(data / "images" / "mismatch.jpg")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(data / "masks" / "mismatch.jpg")
    shutil.copytree(EXAMPLES / "knowledge", root / "knowledge")
    sources = root / "sources.yaml"
    sources.write_text(
        textwrap.dedent(
            f"""\
            version: 1
            knowledge:
              name: medquad-tiny
              format: medquad
              root: knowledge/medquad
              license: CC-BY-4.0
              include: {KNOWLEDGE_INCLUDE}
            sources:
              - name: tiny-kvasir
                modality: endoscopy
                body_region: colon
                license: LicenseRef-research-only
                citation: "Jha et al., Kvasir-SEG, MMM 2020"
                root: kvasir
                layout: image_masks
                images: 'images/(?P<id>[^/]+)\\.jpg'
                masks:
                  - pattern: 'masks/{{id}}\\.jpg'
                    label: polyp
                    threshold: 128
            """
        )
    )
    return sources


def with_tiny_knowledge(root: Path) -> str:
    """Copies the bundled MedQuAD subset into `root` and returns the head of a sources file there:
    `version` and the `knowledge:` block naming three of its documents (the tests' knowledge base)."""
    shutil.copytree(EXAMPLES / "knowledge", root / "knowledge")
    return "version: 1\nknowledge:\n  name: medquad-tiny\n  format: medquad\n  root: knowledge/medquad\n  license: CC-BY-4.0\n" \
           f"  include: {KNOWLEDGE_INCLUDE}\n"


@pytest.fixture(scope="session")
def tiny_sources(tmp_path_factory) -> Path:
    return write_tiny_source(tmp_path_factory.mktemp("tiny"))


def materialize_source(sources_file: Path, workdir: Path) -> dict:
    """The knowledge base and the first shard of the file's first source, materialized in-process on an
    ephemeral instance (raising on nothing: a blocked stage is what some tests look for)."""
    import dagster as dg

    from medtrinity_core.config import load_sources
    from medtrinity_core.pipeline import REGISTRY
    from medtrinity_core.sources.shards import update_plan
    from medtrinity_core.storage import Workdir
    from medtrinity_dagster.build import build_definitions
    from medtrinity_dagster.partitions import partitions_name

    STAGES = REGISTRY.names()

    sources = load_sources(sources_file)
    src = sources.sources[0]
    wd = Workdir.at(workdir)
    plan = update_plan(wd, src)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(partitions_name(src), list(plan))
    defs = build_definitions(sources, str(wd.root))
    everything = [*defs.assets, *defs.asset_checks]
    kb = dg.materialize(everything, resources=defs.resources, instance=instance, selection=[dg.AssetKey("knowledge_base")])
    shard = min(plan)
    result = dg.materialize(everything, resources=defs.resources, instance=instance, partition_key=shard, raise_on_error=False,
                            selection=dg.AssetSelection.assets(*[dg.AssetKey([src.name, s]) for s in STAGES]))
    return {"workdir": wd, "source": src, "shard": shard, "kb": kb, "result": result, "instance": instance, "sources": sources}


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory, tiny_sources):
    """The whole graph materialized once, in-process, on an ephemeral instance."""
    return materialize_source(tiny_sources, tmp_path_factory.mktemp("workdir"))


@pytest.fixture(scope="session")
def samples() -> Path:
    """`../shared/samples`: tests over it skip with a visible reason when it is absent (a user's clone),
    and fail instead when MEDTRINITY_REQUIRE_SAMPLES=1 (set by .ci/run)."""
    if SAMPLES.is_dir():
        return SAMPLES
    message = f"the shared sample corpus is not at {SAMPLES}"
    if os.environ.get("MEDTRINITY_REQUIRE_SAMPLES") == "1":
        pytest.fail(message + " and MEDTRINITY_REQUIRE_SAMPLES=1")
    pytest.skip(message)
