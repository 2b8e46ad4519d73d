"""The stage contract: one registry the factory, the CLI, incremental planning, lineage and the sensor read,
so a stage registered between two others, for one source only, is everywhere it should be and nowhere else."""

from __future__ import annotations

import dataclasses
import io
import shutil
import textwrap
from contextlib import redirect_stdout

import dagster as dg
import polars as pl
import pytest
from PIL import Image

from medtrinity_core import records
from medtrinity_core.accounting import UnaccountedError
from medtrinity_core.config import load_sources
from medtrinity_core.contract import SchemaMismatch, Stage, StageResult
from medtrinity_core.pipeline import REGISTRY, run_chain, run_one
from medtrinity_core.sources.shards import update_plan
from medtrinity_core.storage import Workdir, read_parquet
from medtrinity_dagster import cli
from medtrinity_dagster.build import build_definitions

from .conftest import EXAMPLES, KVASIR, with_tiny_knowledge


def _screen(ctx, inputs):
    """A pass-through: the raw inventory, unchanged, with a count in its metadata."""
    return StageResult(inputs["raw"], metadata={"screened": inputs["raw"].height})


SCREEN = Stage("screened", ("raw",), records.RAW, "item", _screen, settings=("allow_burned_in",), stands_for="raw",
               applies=lambda src: src.allow_burned_in, description="Raw items, screened (a test stage)")


@pytest.fixture()
def two_sources(tmp_path, monkeypatch):
    """Two sources of one Kvasir-SEG image each; only `screened-kvasir` sets the key the test stage applies to."""
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "unused"))  # the CLI sets it for its work folder; restored after
    head = with_tiny_knowledge(tmp_path)
    body = "sources:\n"
    for name, extra in (("screened-kvasir", "    allow_burned_in: true\n"), ("plain-kvasir", "")):
        shutil.copytree(KVASIR, tmp_path / name)
        for extra_image in sorted((tmp_path / name / "images").glob("*.jpg"))[1:]:  # one image each: the chain, not the images, is under test
            extra_image.unlink()
            (tmp_path / name / "masks" / extra_image.name).unlink()
        if name == "plain-kvasir":  # other pixels: the same images would be cross-source duplicates, with no triplets
            for path in (tmp_path / name).rglob("*.jpg"):
                with Image.open(path) as img:
                    img.transpose(Image.Transpose.ROTATE_90).save(path, quality=95)
        body += (f"  - name: {name}\n    modality: endoscopy\n    body_region: colon\n    license: CC-BY-4.0\n    root: {name}\n"
                 "    layout: image_masks\n    images: 'images/(?P<id>[^/]+)\\.jpg'\n"
                 "    masks:\n      - pattern: 'masks/{id}\\.jpg'\n        label: polyp\n        threshold: 128\n" + extra)
    path = tmp_path / "sources.yaml"
    path.write_text(head + body)
    return path


def _materializations(instance, source: str, stage: str):
    return instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey([source, stage]), asset_partitions=["base-0000"]), limit=10).records


def test_a_stage_registered_mid_chain_for_one_source_runs_there_only_and_everything_reads_it(two_sources, tmp_path):
    wd = Workdir.at(tmp_path / "wd")
    sources = load_sources(two_sources)
    screened, plain = sources.source("screened-kvasir"), sources.source("plain-kvasir")
    base_plain = REGISTRY.code_version(plain, "normalized")
    with REGISTRY.registered(SCREEN, after="raw"):
        assert [s.name for s in REGISTRY.chain(screened)] == ["raw", "screened", "normalized", "rois", "context", "descriptions", "triplets"]
        assert [s.name for s in REGISTRY.chain(plain)] == ["raw", "normalized", "rois", "context", "descriptions", "triplets"]
        assert REGISTRY.code_version(plain, "normalized") == base_plain  # the other source's versions do not move

        # materialized only for that source, accounted like every stage
        assert cli.main(["run", "--workdir", str(wd.root), "--sources", str(two_sources), "--no-progress"]) == 0
        instance = dg.DagsterInstance.get()
        (record,) = _materializations(instance, "screened-kvasir", "screened")
        meta = {k: getattr(v, "value", v) for k, v in record.asset_materialization.metadata.items()}
        assert (meta["items_in"], meta["items_out"], meta["items_quarantined"], meta["screened"]) == (1, 1, 0, 1)
        assert _materializations(instance, "plain-kvasir", "screened") == []
        assert wd.manifest_path("screened-kvasir", "screened", "base-0000").exists()
        assert not wd.manifest_path("plain-kvasir", "screened", "base-0000").exists()
        assert read_parquet(wd.quarantine_path("screened-kvasir", "screened", "base-0000")).height == 0

        # the next stage reads it in raw's place, for that source only
        defs = build_definitions(sources, str(wd.root))
        deps = {src: defs.resolve_assets_def(dg.AssetKey([src, "normalized"])).asset_deps[dg.AssetKey([src, "normalized"])] for src in ("screened-kvasir", "plain-kvasir")}
        assert deps == {"screened-kvasir": {dg.AssetKey(["screened-kvasir", "screened"])}, "plain-kvasir": {dg.AssetKey(["plain-kvasir", "raw"])}}

        # in lineage's chain, between normalized and raw
        triplet = read_parquet(wd.manifest_path("screened-kvasir", "triplets", "base-0000"))["triplet_id"][0]
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["lineage", triplet, "--workdir", str(wd.root), "--sources", str(two_sources)]) == 0
        steps = [line.split()[1] for line in out.getvalue().splitlines() if line.strip().startswith("<- ") and "source file" not in line]
        assert steps == ["triplets", "descriptions", "context", "rois", "normalized", "screened", "raw"]
        other = read_parquet(wd.manifest_path("plain-kvasir", "triplets", "base-0000"))["triplet_id"][0]
        out = io.StringIO()
        with redirect_stdout(out):
            assert cli.main(["lineage", other, "--workdir", str(wd.root), "--sources", str(two_sources)]) == 0
        assert "screened" not in out.getvalue()

        # selectable with --select: only it runs again
        assert cli.main(["run", "--workdir", str(wd.root), "--sources", str(two_sources), "--no-progress", "--select", "screened"]) == 0
        assert len(_materializations(instance, "screened-kvasir", "screened")) == 2
        assert len(_materializations(instance, "screened-kvasir", "normalized")) == 1

        # requested by the landing-zone sensor's run of a drop of that source
        landing = tmp_path / "landing"
        shutil.copytree(KVASIR, landing / "screened-kvasir" / "d1")
        (landing / "screened-kvasir" / "d1" / "_READY").touch()
        zone = build_definitions(sources, str(wd.root), landing=str(landing))
        with dg.build_sensor_context(instance=instance, resources=zone.resources) as context:
            result = zone.get_sensor_def("landing_zone")(context)
        assert result.run_requests[0].asset_selection == [dg.AssetKey(["screened-kvasir", s]) for s in
                                                         ("raw", "screened", "normalized", "rois", "context", "descriptions", "triplets")]

        # its implementation version is part of every later stage's code version, not of earlier ones
        before = {s: REGISTRY.code_version(screened, s) for s in ("raw", "screened", "normalized", "triplets")}
        REGISTRY.unregister("screened")
        REGISTRY.register(dataclasses.replace(SCREEN, version="2"), after="raw")
        after = {s: REGISTRY.code_version(screened, s) for s in ("raw", "screened", "normalized", "triplets")}
        assert after["raw"] == before["raw"] and all(after[s] != before[s] for s in ("screened", "normalized", "triplets"))
        assert REGISTRY.code_version(plain, "normalized") == base_plain
        from medtrinity_dagster.incremental import first_stale

        assert first_stale(instance, wd, screened, "base-0000", None) == 1  # a plain run would start again at `screened`
        assert first_stale(instance, wd, plain, "base-0000", None) is None
    assert "screened" not in REGISTRY.names()


def test_a_stage_that_loses_a_row_fails_in_the_runner_and_writes_no_quarantine(tmp_path):
    def lossy(ctx, inputs):
        return StageResult(inputs["raw"].head(1))

    wd = Workdir.at(tmp_path / "wd")
    src = load_sources(_one_source(tmp_path)).sources[0]
    with REGISTRY.registered(dataclasses.replace(SCREEN, name="lossy", run=lossy), after="raw"):
        shard = min(update_plan(wd, src))
        raw = run_chain(src, shard, wd, end="raw")["raw"].rows
        assert raw.height == 3
        with pytest.raises(UnaccountedError, match=r"lossy: 2 of 3 items have no output row, quarantine row or named exclusion"):
            run_one("lossy", src, shard, wd, {"raw": raw})
        assert not wd.quarantine_path(src.name, "lossy", shard).exists()


def test_a_stage_whose_rows_are_not_of_its_schema_is_stopped_naming_the_column(tmp_path):
    def renamed(ctx, inputs):
        return StageResult(inputs["raw"].rename({"sha256": "digest"}))

    wd = Workdir.at(tmp_path / "wd")
    src = load_sources(_one_source(tmp_path)).sources[0]
    with REGISTRY.registered(dataclasses.replace(SCREEN, name="renamed", run=renamed), after="raw"):
        shard = min(update_plan(wd, src))
        raw = run_chain(src, shard, wd, end="raw")["raw"].rows
        with pytest.raises(SchemaMismatch, match=r"renamed: its rows do not have its output schema: digest \(String vs not in the schema\), sha256 \(missing vs String\)"):
            run_one("renamed", src, shard, wd, {"raw": raw})
        assert not wd.quarantine_path(src.name, "renamed", shard).exists()


def test_the_runner_withdraws_what_a_takedown_covers_at_any_stage(tmp_path):
    """A takedown recorded after raw ran still keeps the item out of a later stage's rows (the runner's
    one filter), as a `taken_down` quarantine row of that stage."""
    from medtrinity_core.sources.identity import SourcePaths
    from medtrinity_core.takedown import request

    wd = Workdir.at(tmp_path / "wd")
    src = load_sources(_one_source(tmp_path)).sources[0]
    with REGISTRY.registered(SCREEN, after="raw"):
        shard = min(update_plan(wd, src))
        raw = run_chain(src, shard, wd, end="raw")["raw"].rows
        victim = sorted(raw["relpath"].to_list())[0]
        request(wd, src, "path", victim, SourcePaths.of(wd, src))
        result = run_one("screened", src, shard, wd, {"raw": raw})
    assert sorted(result.rows["relpath"].to_list()) == sorted(raw["relpath"].to_list())[1:]
    assert result.rejected.select("relpath", "stage", "reason").rows() == [(victim, "screened", "taken_down")]
    assert (result.metadata["items_in"], result.metadata["items_out"], result.metadata["items_quarantined"]) == (3, 2, 1)


def test_a_takedown_recorded_after_normalized_keeps_the_item_out_of_triplets_and_the_lineage_index(tmp_path):
    """Rows that name only an image (rois ... triplets) are withdrawn through the normalized manifest's
    item and path: the runner filters the stage's inputs, so its side outputs never see the item."""
    from medtrinity_core.sources.identity import SourcePaths
    from medtrinity_core.takedown import request

    wd = Workdir.at(tmp_path / "wd")
    src = load_sources(_one_source(tmp_path)).sources[0]
    shard = min(update_plan(wd, src))
    first = run_chain(src, shard, wd)
    assert first["triplets"].rows.height == 3
    normalized = first["normalized"].rows
    victim = normalized.row(0, named=True)
    request(wd, src, "path", victim["relpath"], SourcePaths.of(wd, src))
    inputs = {name: first[name].rows for name in ("normalized", "rois", "context", "descriptions")}
    result = run_one("triplets", src, shard, wd, inputs)
    assert victim["image_id"] not in result.rows["image_id"].to_list() and result.rows.height == 2
    assert result.rejected.select("item_id", "stage", "reason").rows() == [(victim["item_id"], "triplets", "taken_down")]
    assert (result.metadata["images_in"], result.metadata["images_out"], result.metadata["images_quarantined"]) == (3, 2, 1)
    lineage = read_parquet(wd.lineage_path(src.name, shard))
    assert victim["image_id"] not in lineage["image_id"].to_list() and lineage.height == 2


def test_a_stage_that_stands_for_another_must_write_its_schema():
    with pytest.raises(ValueError, match="wrong stands for raw, so it must write raw's schema"):
        REGISTRY.register(dataclasses.replace(SCREEN, name="wrong", schema=records.NORMALIZED), after="raw")
    assert "wrong" not in REGISTRY.names()


def test_the_quality_settings_are_part_of_the_normalized_code_version_and_unused_faithfulness_keys_are_not(tmp_path):
    src = load_sources(_one_source(tmp_path)).sources[0]
    lenient = src.model_copy(update={"quality": '{"severity": {"empty_mask": "warn"}}'})  # a mask defect then drops the mask only
    assert REGISTRY.code_version(lenient, "raw") == REGISTRY.code_version(src, "raw")
    assert REGISTRY.code_version(lenient, "normalized") != REGISTRY.code_version(src, "normalized")
    judged = src.model_copy(update={"faithfulness": src.faithfulness.model_copy(update={"regenerate": 2})})  # no stage acts on it yet
    assert REGISTRY.code_version(judged, "descriptions") == REGISTRY.code_version(src, "descriptions")
    stricter = src.model_copy(update={"faithfulness": src.faithfulness.model_copy(update={"min_faithfulness": 0.9})})
    assert REGISTRY.code_version(stricter, "descriptions") != REGISTRY.code_version(src, "descriptions")
    assert REGISTRY.code_version(stricter, "context") == REGISTRY.code_version(src, "context")


def test_the_reason_table_names_exactly_the_built_in_stages():
    from medtrinity_core.reasons import REASONS, STAGES

    assert STAGES == REGISTRY.names()
    assert {stage for r in REASONS.values() for stage in r.stages} <= set(REGISTRY.names())


def _one_source(tmp_path):
    shutil.copytree(KVASIR, tmp_path / "kv")
    path = tmp_path / "one.yaml"
    path.write_text(textwrap.dedent("""\
        version: 1
        sources:
          - name: kv
            modality: endoscopy
            license: CC-BY-4.0
            root: kv
            layout: image_masks
            allow_burned_in: true
            images: 'images/(?P<id>[^/]+)\\.jpg'
            masks:
              - pattern: 'masks/{id}\\.jpg'
                label: polyp
                threshold: 128
        """))
    return path


def test_every_stage_is_defined_once_and_the_cli_offers_exactly_the_registry():
    assert REGISTRY.names() == ("raw", "normalized", "rois", "context", "descriptions", "triplets")
    run = next(a for a in cli.parser()._subparsers._group_actions[0].choices["run"]._actions if a.dest == "select")
    assert list(run.choices) == ["knowledge_base", *REGISTRY.names()]
    assert all(isinstance(s.schema, dict) and s.schema for s in REGISTRY.stages)
    assert {s.name: s.pool(_pool_probe()) for s in REGISTRY.stages} == {"raw": None, "normalized": None, "rois": "gpu", "context": None,
                                                                        "descriptions": "gpu", "triplets": None}


def _pool_probe():
    """A source-like object with an expert model and a transformers generator (what the pools read)."""
    return type("Probe", (), {"model_expert": object(), "generator": type("G", (), {"backend": "transformers"})()})()


def test_takedown_detail_and_reason_are_those_the_raw_stage_wrote_before(tmp_path):
    wd = Workdir.at(tmp_path / "wd")
    src = load_sources(_one_source(tmp_path)).sources[0]
    shard = min(update_plan(wd, src))
    from medtrinity_core.sources.identity import SourcePaths
    from medtrinity_core.takedown import request

    request(wd, src, "path", "images", SourcePaths.of(wd, src))
    result = run_chain(src, shard, wd, end="raw")["raw"]
    assert result.rows.height == 0
    assert set(result.rejected["detail"].to_list()) == {"a takedown request covers this item (takedown/)"}
    assert pl.Series(result.rejected["reason"]).unique().to_list() == ["taken_down"]


def test_the_plan_of_the_demo_validates_loads_to_the_same_configuration_and_groups_settings_by_stage(tmp_path):
    sources = load_sources(EXAMPLES / "sources.yaml")
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["sources", "validate", str(EXAMPLES / "sources.yaml"), "--plan"]) == 0
    text = out.getvalue()
    plan = tmp_path / "elsewhere" / "plan.yaml"  # paths in the plan are absolute: it reads the same from any folder
    plan.parent.mkdir()
    plan.write_text(text)
    again = load_sources(plan)
    assert again.model_copy(update={"path": sources.path}) == sources
    for src in sources.sources:
        block = text[text.index(f"  - name: {src.name}\n"):]
        marks = [block.index(f"    # {stage.name} (code version {REGISTRY.code_version(src, stage)})") for stage in REGISTRY.chain(src)]
        assert marks == sorted(marks)  # every stage of the chain, in order, with its code version
        assert marks[1] < block.index("    max_side: ") < marks[2]  # max_side under normalized, the stage that reads it
    # an edit of the plan is an edit of the sources file: one source's max_side moves that source's versions from normalized on
    first = sources.sources[0]
    edited = text.replace(f"  - name: {first.name}\n", f"  - name: {first.name}\n    max_side: 512\n", 1).replace("    max_side: 1024\n", "", 1)
    plan.write_text(edited)
    changed = load_sources(plan)
    assert changed.sources[0].max_side == 512 and changed.sources[1:] == sources.sources[1:]
    assert REGISTRY.code_version(changed.sources[0], "raw") == REGISTRY.code_version(first, "raw")
    assert REGISTRY.code_version(changed.sources[0], "normalized") != REGISTRY.code_version(first, "normalized")


def test_no_module_but_the_registry_lists_the_chain_of_stages():
    """A tuple or list of three or more stage names in chain order outside pipeline.py (reasons.py's is
    compared with the registry above) would be a second statement of the chain; the scan is checked on a
    snippet first."""
    import ast
    from pathlib import Path

    order = {name: i for i, name in enumerate(REGISTRY.names())}

    def chains(text: str) -> list[int]:  # three or more stage names in chain order (reading some stages' manifests is fine)
        found = []
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Tuple, ast.List)) and len(node.elts) >= 3 and all(isinstance(e, ast.Constant) and e.value in order for e in node.elts):
                ranks = [order[e.value] for e in node.elts]
                if ranks == sorted(ranks):
                    found.append(node.lineno)
        return found

    assert chains('STAGES = ("raw", "normalized", "rois")\nfine = ("raw", "normalized")\nread = ("descriptions", "normalized", "rois")\n') == [1]
    repo = Path(__file__).resolve().parents[1]
    found = {str(p.relative_to(repo)): lines for folder in ("medtrinity_core", "medtrinity_dagster", "tools") for p in sorted((repo / folder).rglob("*.py"))
             if p.name not in ("pipeline.py", "reasons.py") and (lines := chains(p.read_text()))}
    assert found == {}
