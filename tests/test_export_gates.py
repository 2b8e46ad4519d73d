"""Exports honour the pipeline's gates: a partition whose blocking checks failed, never ran, or judged an
earlier version of a manifest is left out whole (one line per check), a row in which the export's own
patient-data scan finds something is left out too, and `--include-failed-checks` exports them with the
card saying so. A fast unit test of collect() over hand-written manifests and verdicts, then the whole
path: a source with a patient's name, MRN and birth date in a file name, materialized in-process, then
`medtrinity export` in-process."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import polars as pl
import pytest
from PIL import Image

from medtrinity_core.errors import UsageError
from medtrinity_core.quality.verdicts import BLOCKING, read_verdict, record_verdict
from medtrinity_core.records import NORMALIZED, TRIPLETS, frame
from medtrinity_core.release.collect import Filters, collect
from medtrinity_core.storage import Workdir, write_parquet

from .conftest import KVASIR, materialize_source, with_tiny_knowledge

SOURCE = "s"
PLANTED = "Quixotica^Zebulon_MRN8675309_19520317"


def triplet(tid: str, relpath: str = "images/cju0qkwl35piu0993l0dewei2.png", description: str = "An endoscopy image of the colon.") -> dict:
    return {"triplet_id": tid, "image_id": f"img-{tid}", "source": SOURCE, "modality": "endoscopy", "license": "CC0-1.0", "description": description,
            "coarse_caption": "Endoscopy, colon.", "faithfulness": 1.0, "rois": [],
            "provenance": {"source": SOURCE, "source_relpath": relpath, "item_id": f"itm-{tid}", "patient_key": None, "citation": "Jha et al., Kvasir-SEG, MMM 2020"}}


def write_partition(wd: Workdir, shard: str, rows: list[dict]) -> None:
    """A shard's triplets, and stage manifests upstream of it (empty: only their digests matter here)."""
    write_parquet(frame(rows, TRIPLETS), wd.manifest_path(SOURCE, "triplets", shard))
    for stage in ("normalized", "rois", "descriptions"):
        write_parquet(frame([], NORMALIZED) if stage == "normalized" else frame([{"shard": shard}], {"shard": pl.String}), wd.manifest_path(SOURCE, stage, shard))


def vouch(wd: Workdir, shard: str, **overrides) -> None:
    """Every blocking check's verdict on the shard's current manifests: passed, unless overridden with
    (passed, severity, metadata)."""
    for check, stage in BLOCKING.items():
        passed, severity, metadata = overrides.get(check, (True, "ERROR", {"suite": stage, "errors": [], "warnings": []}))
        record_verdict(wd, SOURCE, shard, check, stage, passed, severity, metadata)


PATIENT_DATA_FAILED = (False, "ERROR", {"suite": "triplets", "errors": [{"expectation": "no patient data in any text field", "failing_rows": 1, "examples": ["trp-b1"]}],
                                        "warnings": []})


@pytest.fixture()
def wd(tmp_path) -> Workdir:
    wd = Workdir.at(tmp_path / "wd").ensure()
    write_partition(wd, "ok-0000", [triplet("trp-a1"), triplet("trp-a2")])
    vouch(wd, "ok-0000")
    write_partition(wd, "failed-0000", [triplet("trp-b1"), triplet("trp-b2"), triplet("trp-b3")])
    vouch(wd, "failed-0000", triplets_suite=PATIENT_DATA_FAILED)
    write_partition(wd, "warned-0000", [triplet("trp-c1")])  # warnings alone block nothing
    vouch(wd, "warned-0000", rois_suite=(False, "WARN", {"suite": "rois", "errors": [], "warnings": [{"expectation": "area ratios inside the label's range",
                                                                                                       "failing_rows": 1, "examples": ["roi-1"]}]}))
    write_partition(wd, "unchecked-0000", [triplet("trp-d1")])  # materialized, then the run was killed before its checks
    write_partition(wd, "stale-0000", [triplet("trp-e1")])
    vouch(wd, "stale-0000")
    write_partition(wd, "stale-0000", [triplet("trp-e1"), triplet("trp-e2")])  # re-materialized without a re-check
    write_partition(wd, "scanned-0000", [triplet("trp-f1"), triplet("trp-f2", relpath=f"images/{PLANTED}.png")])
    vouch(wd, "scanned-0000")  # the checks passed (say, an older scan): the export's own scan still reads every row
    return wd


def test_collect_exports_only_partitions_every_blocking_check_vouches_for_and_names_each_one_it_leaves_out(wd):
    got = collect(wd, [SOURCE], Filters())
    assert [r["triplet_id"] for r in got.rows] == ["trp-a1", "trp-a2", "trp-c1", "trp-f1"]
    assert got.gate_lines() == [
        "left out 3 row(s) of s shard failed-0000: triplets_suite failed (no patient data in any text field: 1 row(s), e.g. trp-b1)",
        ("left out 1 row(s) of s shard scanned-0000: the export's patient-data scan found person name in provenance.source_relpath "
         "and 2 more (1 row(s), e.g. trp-f2)"),
        "left out 2 row(s) of s shard stale-0000: triplets_suite judged an earlier triplets manifest, not the one there now (unchecked)",
        *[f"left out 1 row(s) of s shard unchecked-0000: {check} never ran on it (unchecked)" for check in BLOCKING],
    ]
    assert dict(got.dropped) == {"blocking check failed": 3, "checks not run on the current manifests": 3, "patient data found at export": 1}


def test_a_verdict_records_the_digest_of_the_manifest_it_judged_and_keeps_only_ids(wd):
    verdict = read_verdict(wd, SOURCE, "triplets_suite", "failed-0000")
    assert verdict["passed"] is False and verdict["severity"] == "ERROR" and verdict["stage"] == "triplets"
    assert verdict["manifest"]["path"] == "manifests/s/triplets/failed-0000.parquet" and len(verdict["manifest"]["sha256"]) == 64
    assert verdict["failing"] == [{"expectation": "no patient data in any text field", "failing_rows": 1, "examples": ["trp-b1"]}]
    assert read_verdict(wd, SOURCE, "triplets_suite", "unchecked-0000") is None


def test_include_failed_checks_exports_those_rows_and_says_so_for_each(wd):
    got = collect(wd, [SOURCE], Filters(include_failed_checks=True))
    assert len(got.rows) == 11 and got.included_failed
    assert all(line.startswith("included ") and "(--include-failed-checks)" in line for line in got.gate_lines())
    assert "included 3 row(s) of s shard failed-0000 (--include-failed-checks): triplets_suite failed" in got.gate_lines()[0]
    assert not got.dropped


def test_a_partition_all_of_whose_rows_are_held_back_is_an_error_naming_the_first_reason(wd):
    from medtrinity_core.errors import MedtrinityError

    with pytest.raises(MedtrinityError, match=r"left out 3 row\(s\) of s shard failed-0000: triplets_suite failed .*--include-failed-checks"):
        collect(wd, [SOURCE], Filters(licenses=("MIT",)))  # nothing passes this filter ...
    with pytest.raises(MedtrinityError, match=r"no triplets to export .*'licence not listed': 11"):
        collect(wd, [SOURCE], Filters(licenses=("MIT",), include_failed_checks=True))  # ... and with the flag the filter is what remains


def unit_export_cli(wd: Workdir, monkeypatch, tmp_path, *extra: str) -> int:
    """`medtrinity export` over the hand-written work folder (its one source, `s`, stands in for a sources file)."""
    from types import SimpleNamespace

    from medtrinity_dagster import cli

    monkeypatch.setattr(cli, "load_sources", lambda path: SimpleNamespace(sources=[SimpleNamespace(name=SOURCE)], path=path))
    return cli.main(["export", "--sources", "unused.yaml", "--workdir", str(wd.root), "--out", str(tmp_path / "out"), "--format", "hf", *extra])


def test_when_nothing_is_exported_every_gates_line_is_printed_then_one_error_line(wd, monkeypatch, tmp_path, capsys):
    assert unit_export_cli(wd, monkeypatch, tmp_path, "--licenses", "MIT") == 1
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == [
        "left out 3 row(s) of s shard failed-0000: triplets_suite failed (no patient data in any text field: 1 row(s), e.g. trp-b1)",
        "left out 2 row(s) of s shard stale-0000: triplets_suite judged an earlier triplets manifest, not the one there now (unchecked)",
        *[f"left out 1 row(s) of s shard unchecked-0000: {check} never ran on it (unchecked)" for check in BLOCKING],
    ]
    assert err[-1].startswith("error: no triplets to export ") and "(and 6 more)" in err[-1] and "--include-failed-checks" in err[-1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--splits", "train=nan", "train=nan is not a finite number"),
    ("--splits", "train=inf,test=-inf", "train=inf is not a finite number"),
    ("--splits", "=1", "has no split name"),
    ("--splits", " =0.5,test=0.5", "has no split name"),
    ("--splits", "train=0.5,train=0.5", "split train is named more than once"),
    ("--splits", "train=0.9,test=0.2", "sum to 1, not 1.1"),
    ("--splits", "train", "'train' is not NAME=FRACTION"),
    ("--min-faithfulness", "nan", "must be a number from 0 to 1, not nan"),
    ("--min-faithfulness", "inf", "must be a number from 0 to 1, not inf"),
    ("--min-faithfulness", "1.5", "must be a number from 0 to 1, not 1.5"),
    ("--min-faithfulness", "-0.1", "must be a number from 0 to 1, not -0.1"),
])
def test_export_refuses_splits_and_min_faithfulness_it_cannot_mean_in_one_line_with_exit_2(wd, monkeypatch, tmp_path, capsys, option, value, says):
    assert unit_export_cli(wd, monkeypatch, tmp_path, f"{option}={value}") == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {option}" if option == "--splits" else "error: min faithfulness") and says in err[0], err
    assert not (tmp_path / "out").exists()


def test_splits_and_min_faithfulness_at_their_bounds_are_taken(wd):
    from medtrinity_core.release.splits import parse_fractions

    fractions = parse_fractions(" train = 1 ,test=0")
    assert fractions == (("train", 1.0), ("test", 0.0))
    got = collect(wd, [SOURCE], Filters(fractions=fractions, min_faithfulness=1.0))  # every row scores 1.0
    assert [(r["triplet_id"], r["split"]) for r in got.rows] == [("trp-a1", "train"), ("trp-a2", "train"), ("trp-c1", "train"), ("trp-f1", "train")]
    assert len(collect(wd, [SOURCE], Filters(min_faithfulness=0)).rows) == 4
    with pytest.raises(UsageError, match="not nan"):
        Filters(min_faithfulness=float("nan"))  # the exports asset's config goes through the same check
    with pytest.raises(UsageError, match="named more than once"):
        Filters(fractions=(("train", 0.5), ("train", 0.5)))


FAITHFULNESS_FAILED = (False, "ERROR", {
    "descriptions": 4, "mean_faithfulness": 0.85, "mean_completeness": 0.7, "min_mean_completeness": 0.9, "contradiction_rate": 0.25, "max_contradiction_rate": 0.2,
    "contradictions_by_type": {"absent_finding": 1},
    "worst": [{"image_id": "img-1", "faithfulness": 0.4, "completeness": 0.8, "contradictions": ["absent_finding"]},
              {"image_id": "img-2", "faithfulness": 1.0, "completeness": 0.55, "contradictions": []},
              {"image_id": "img-3", "faithfulness": 1.0, "completeness": 0.95, "contradictions": []}]})


def test_a_failed_faithfulness_verdict_names_its_figures_against_thresholds_and_its_worst_rows(tmp_path):
    wd = Workdir.at(tmp_path / "wd").ensure()
    write_partition(wd, "unfaithful-0000", [triplet("trp-g1")])
    vouch(wd, "unfaithful-0000", faithfulness=FAITHFULNESS_FAILED)
    verdict = read_verdict(wd, SOURCE, "faithfulness", "unfaithful-0000")
    assert verdict["summary"] == ("mean faithfulness 0.85, mean completeness 0.7 (at least 0.9), contradiction rate 0.25 (at most 0.2), over 4 description(s); "
                                  "worst: img-1 (0.4/0.8), img-2 (1.0/0.55)")
    assert verdict["failing"] == [{"expectation": "mean completeness at least 0.9", "failing_rows": 4, "examples": ["img-1", "img-2"]},
                                  {"expectation": "contradiction rate at most 0.2", "failing_rows": 1, "examples": ["img-1"]}]
    got = collect(wd, [SOURCE], Filters(include_failed_checks=True))
    assert got.gate_lines() == [("included 1 row(s) of s shard unfaithful-0000 (--include-failed-checks): faithfulness failed "
                                 "(mean faithfulness 0.85, mean completeness 0.7 (at least 0.9), contradiction rate 0.25 (at most 0.2), over 4 description(s); "
                                 "worst: img-1 (0.4/0.8), img-2 (1.0/0.55))")]
    assert got.gates[0].examples == ["img-1", "img-2"]  # each id once
    passed = record_verdict(wd, SOURCE, "unfaithful-0000", "faithfulness", "descriptions", True, "ERROR", {**FAITHFULNESS_FAILED[2], "mean_completeness": 0.95, "contradiction_rate": 0.0})
    assert passed["failing"] == []


def test_run_prints_a_failed_check_with_the_verdicts_own_summary_from_dagster_metadata():
    import dagster as dg

    from medtrinity_core.quality.verdicts import brief
    from medtrinity_dagster.cli import _brief

    figures = FAITHFULNESS_FAILED[2]
    meta = {k: dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v for k, v in figures.items()}  # as the factory's checks report it
    meta = dict(dg.AssetCheckResult(passed=False, metadata=meta).metadata)
    assert all(isinstance(v, dg.MetadataValue) for v in meta.values())
    assert _brief("faithfulness", meta, "ERROR") == brief("faithfulness", figures) and "worst: img-1 (0.4/0.8), img-2 (1.0/0.55)" in _brief("faithfulness", meta)
    suite = {"suite": "descriptions", "errors": [{"expectation": "description length within 5000-6000 characters", "failing_rows": 3, "examples": ["d-1", "d-2\nd", "d-3", "d-4"]}],
             "warnings": [{"expectation": "a warning", "failing_rows": 1, "examples": ["w-1"]}]}
    assert _brief("descriptions_suite", {k: dg.MetadataValue.json(v) if isinstance(v, list) else v for k, v in suite.items()}, "ERROR") == \
        "description length within 5000-6000 characters: 3 row(s), e.g. d-1, d-2 d, d-3"  # one line; a blocking line names the errors
    assert _brief("rois_suite", {**suite, "errors": []}, "WARN") == "a warning: 1 row(s), e.g. w-1"


def test_the_factorys_blocking_checks_are_the_ones_an_export_requires(tiny_sources):
    from medtrinity_core.config import load_sources
    from medtrinity_dagster.factory import source_assets

    _, checks = source_assets(load_sources(tiny_sources).sources[0])
    specs = [spec for c in checks for spec in c.check_specs]
    assert {s.name: s.asset_key.path[-1] for s in specs if s.blocking} == BLOCKING


# -- the whole path ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """Kvasir-SEG's three images as PNGs, one of them named with a patient's DICOM name, MRN and birth
    date, in shards of two (the planted one sorts first: shard base-0000 holds it and one good image,
    base-0001 the third), every shard materialized in-process with its checks (paths kept: the source
    does not set paths_identify_patients)."""
    import dagster as dg

    from medtrinity_core.pipeline import REGISTRY
    from medtrinity_dagster.build import build_definitions
    from medtrinity_dagster.partitions import partitions_name

    STAGES = REGISTRY.names()

    root = tmp_path_factory.mktemp("planted")
    data = root / "kvasir"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    for n, jpg in enumerate(sorted((KVASIR / "images").glob("*.jpg"))):
        name = PLANTED if n == 0 else jpg.stem
        Image.open(jpg).save(data / "images" / f"{name}.png")
        Image.open(KVASIR / "masks" / jpg.name).convert("L").save(data / "masks" / f"{name}.png")
    sources = root / "sources.yaml"
    sources.write_text(with_tiny_knowledge(root) + textwrap.dedent("""\
        sources:
          - name: kvasir-seg
            modality: endoscopy
            body_region: colon
            license: CC-BY-4.0
            citation: "Jha et al., Kvasir-SEG, MMM 2020"
            root: kvasir
            layout: image_masks
            shard_size: 2
            images: 'images/(?P<id>[^/]+)\\.png'
            masks:
              - pattern: 'masks/{id}\\.png'
                label: polyp
                threshold: 128
        """))
    run = materialize_source(sources, root / "wd")
    defs = build_definitions(run["sources"], str(run["workdir"].root))
    src = run["source"]
    others = sorted(k for k in run["instance"].get_dynamic_partitions(partitions_name(src)) if k != run["shard"])
    for shard in others:
        dg.materialize([*defs.assets, *defs.asset_checks], resources=defs.resources, instance=run["instance"], partition_key=shard, raise_on_error=False,
                       selection=dg.AssetSelection.assets(*[dg.AssetKey([src.name, s]) for s in STAGES]))
    return {**run, "sources_file": sources, "root": root, "others": others}


def export_cli(planted, out: Path, *extra: str) -> int:
    from medtrinity_dagster.cli import main

    return main(["export", "--sources", str(planted["sources_file"]), "--workdir", str(planted["workdir"].root), "--out", str(out), "--format", "hf", *extra])


def flagged_example(planted) -> str:
    failed = next(e for e in planted["result"].get_asset_check_evaluations() if e.check_name == "triplets_suite")
    return failed.metadata["errors"].value[0]["examples"][0]


def test_the_triplets_check_flags_the_planted_file_name_and_records_its_verdict(planted):
    assert planted["others"] == ["base-0001"] and planted["shard"] == "base-0000"
    evaluations = {e.check_name: e for e in planted["result"].get_asset_check_evaluations()}
    failed = evaluations["triplets_suite"]
    assert not failed.passed and failed.severity.value == "ERROR"
    errors = failed.metadata["errors"].value
    assert [(e["expectation"], e["failing_rows"]) for e in errors] == [("no patient data in any text field", 1)]
    assert all(evaluations[c].passed for c in BLOCKING if c != "triplets_suite")
    wd = planted["workdir"]
    assert read_verdict(wd, "kvasir-seg", "triplets_suite", "base-0000")["failing"][0]["examples"] == errors[0]["examples"]
    assert all(read_verdict(wd, "kvasir-seg", c, "base-0001")["passed"] for c in BLOCKING)


def test_export_leaves_out_the_flagged_partition_with_one_line_per_check_and_exports_the_rest(planted, tmp_path, capsys):
    from medtrinity_core.storage import read_parquet

    wd = planted["workdir"]
    assert [read_parquet(wd.manifest_path("kvasir-seg", "triplets", s)).height for s in ("base-0000", "base-0001")] == [2, 1]
    out = tmp_path / "out"
    assert export_cli(planted, out) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [(f"left out 2 row(s) of kvasir-seg shard base-0000: triplets_suite failed "
                                          f"(no patient data in any text field: 1 row(s), e.g. {flagged_example(planted)})")]
    assert "1 records as hf" in captured.out and "left out: 2 (blocking check failed)" in captured.out
    summary = json.loads((out / "export.json").read_text())
    assert summary["rows"] == 1 and summary["checks"]["include_failed_checks"] is False
    assert [(p["check"], p["shard"], p["rows"], p["included"]) for p in summary["checks"]["partitions"]] == [("triplets_suite", "base-0000", 2, False)]
    exported = pl.read_parquet(next((out / "data").glob("*.parquet")))
    assert PLANTED not in json.dumps(exported.drop("image").to_dicts(), default=str)
    assert "Left out by the pipeline's blocking checks and the export's patient-data scan:" in (out / "README.md").read_text()


def test_include_failed_checks_exports_them_and_the_card_records_it(planted, tmp_path, capsys):
    from medtrinity_core.release.checksums import verify

    out = tmp_path / "out"
    assert export_cli(planted, out, "--include-failed-checks") == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [(f"included 2 row(s) of kvasir-seg shard base-0000 (--include-failed-checks): triplets_suite failed "
                    f"(no patient data in any text field: 1 row(s), e.g. {flagged_example(planted)})"),
                   (f"included 1 row(s) of kvasir-seg shard base-0000 (--include-failed-checks): the export's patient-data scan found "
                    f"person name in provenance.source_relpath and 2 more (1 row(s), e.g. {flagged_example(planted)})")]
    summary = json.loads((out / "export.json").read_text())
    assert summary["rows"] == 3 and summary["filters"]["include_failed_checks"] is True and summary["checks"]["include_failed_checks"] is True
    assert [(p["check"], p["rows"], p["included"]) for p in summary["checks"]["partitions"]] == [("triplets_suite", 2, True), ("patient_data_scan", 1, True)]
    card = (out / "README.md").read_text()
    assert "**Included despite failed or missing checks** (`--include-failed-checks`: a person reviewed these rows):" in card
    assert f"- {err[0]}" in card and f"- {err[1]}" in card
    assert verify(out) == []
    # what the scan matched is never repeated where it reports: the terminal, the card, export.json
    for text in (*err, card, (out / "export.json").read_text()):
        assert "Quixotica" not in text and "8675309" not in text and "19520317" not in text


@pytest.mark.parametrize("field,value", [
    ("generator_model", "gpt-4o-2024-08-06"), ("generator_model", "claude-3-5-sonnet-20241022"), ("kb_version", "1234567890123456"),
    ("citation", "Jha et al., Kvasir-SEG, https://doi.org/10.5281/zenodo.3715942"),
])
def test_the_export_scan_reads_text_fields_not_model_names_versions_or_dois(field, value):
    from medtrinity_core.release.gates import row_findings

    row = triplet("trp-q")
    row["provenance"] = {**row["provenance"], field: value, "passages": [{"passage_id": "pubmed:12345678#0", "focus": "colonic polyps", "citation": None}]}
    assert row_findings(row) == []
    row["provenance"]["source_relpath"] = "images/PatientID_8675309.png"
    assert row_findings(row) == ["MRN-like number in provenance.source_relpath"]


def test_the_exports_asset_honours_the_same_gates(planted, tmp_path):
    import dagster as dg

    from medtrinity_dagster.build import build_definitions

    defs = build_definitions(planted["sources"], str(planted["workdir"].root))
    for include, rows, left_out in ((False, 1, 2), (True, 3, 0)):
        result = dg.materialize([*defs.assets], resources=defs.resources, instance=planted["instance"], selection=[dg.AssetKey("exports")],
                                run_config={"ops": {"exports": {"config": {"formats": ["hf"], "out": str(tmp_path / str(include)), "include_failed_checks": include}}}})
        meta = result.get_asset_materialization_events()[0].materialization.metadata
        assert (meta["rows"].value, meta["left_out_by_checks"].value) == (rows, left_out)
        assert [p["check"] for p in meta["checks"].value["partitions"]] == ["triplets_suite"] + (["patient_data_scan"] if include else [])


def test_run_re_runs_a_stage_no_verdict_vouches_for_and_not_one_whose_check_failed(planted):
    """A verdict missing (a run killed before its checks, an older work folder) or on another manifest
    makes that stage stale for `medtrinity run`; a failed verdict is a verdict: the partition waits."""
    from medtrinity_core.pipeline import REGISTRY
    from medtrinity_dagster.incremental import first_stale

    STAGES = REGISTRY.names()

    wd, src, instance = planted["workdir"], planted["source"], planted["instance"]
    assert first_stale(instance, wd, src, "base-0001", None) is None
    assert first_stale(instance, wd, src, "base-0000", None) is None  # triplets_suite failed there: not re-run by a plain run
    path = wd.root / "checks" / "kvasir-seg" / "rois_suite" / "base-0001.json"
    kept = path.read_bytes()
    try:
        path.unlink()
        assert first_stale(instance, wd, src, "base-0001", None) == STAGES.index("rois")
        path.write_bytes(kept.replace(b'"sha256": "', b'"sha256": "0'))  # the stamp still matches: a stat, not a read, says so
        assert first_stale(instance, wd, src, "base-0001", None) is None
        path.write_bytes(kept.replace(b'"sha256": "', b'"sha256": "0').replace(b'"mtime_ns": ', b'"mtime_ns": 1'))
        assert first_stale(instance, wd, src, "base-0001", None) == STAGES.index("rois")
        path.write_bytes(kept.replace(b'"mtime_ns": ', b'"mtime_ns": 1'))  # a copied work folder: new times, the same bytes
        assert first_stale(instance, wd, src, "base-0001", None) is None
    finally:
        path.write_bytes(kept)
    assert first_stale(instance, wd, src, "base-0001", None) is None


@pytest.mark.parametrize("damage", ["truncated", "directory", "other schema", "verdict list", "verdict manifest string", "verdict failing int",
                                    "verdict passed string", "verdict severity lower"])
def test_a_damaged_shard_or_verdict_leaves_its_partition_out_and_the_export_goes_on(wd, damage):
    manifest = wd.manifest_path(SOURCE, "triplets", "ok-0000")
    verdict = wd.root / "checks" / SOURCE / "triplets_suite" / "failed-0000.json"
    if damage == "truncated":
        manifest.write_bytes(manifest.read_bytes()[:100])
    elif damage == "directory":
        manifest.unlink()
        manifest.mkdir()
    elif damage == "other schema":
        write_parquet(pl.DataFrame({"x": [1]}), manifest)
    else:
        record = json.loads(verdict.read_text())
        edits = {"verdict list": [1], "verdict manifest string": {**record, "manifest": "x"}, "verdict failing int": {**record, "failing": 5},
                 "verdict passed string": {**record, "passed": "false"}, "verdict severity lower": {**record, "severity": "error"}}
        verdict.write_text(json.dumps(edits[damage]))
    got = collect(wd, [SOURCE], Filters())
    exported = {r["triplet_id"] for r in got.rows}
    assert "trp-b1" not in exported  # the failed partition's rows never come back through a damaged verdict
    if damage in ("truncated", "directory", "other schema"):
        assert not exported & {"trp-a1", "trp-a2"} and {"trp-c1", "trp-f1"} <= exported
        assert any(line.startswith("left out 0 row(s) of s shard ok-0000: its triplets manifest cannot be read") for line in got.gate_lines())
    else:
        assert any("failed-0000: triplets_suite never ran on it (unchecked)" in line for line in got.gate_lines())
