"""Takedown: one patient removed from a work folder, with nothing of it left behind, now and on later runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pydicom
import pytest

from medtrinity_core.storage import read_parquet

from .conftest import REPO
from .dicom_factory import write_series


def medtrinity(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "MEDTRINITY_SALT": "takedown-test-salt"}
    return subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)


@pytest.fixture()
def two_patients(tmp_path) -> Path:
    root = tmp_path / "hospital"
    write_series(root / "pat1")
    write_series(root / "pat2")
    for path in (root / "pat2").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = "ROE^RICHARD", "MRN-11112222"
        ds.PixelData = (ds.pixel_array + 300).astype("int16").tobytes()  # another patient's pixels: not a duplicate
        ds.save_as(path, enforce_file_format=True)
    sources = tmp_path / "sources.yaml"
    sources.write_text(textwrap.dedent(f"""\
        version: 1
        sources:
          - name: hosp
            modality: ct
            body_region: abdomen
            license: CC-BY-4.0
            root: {root}
            layout: dicom
            images: '.+\\.dcm'
            negatives_per_volume: 3
            near_distance: 0
        """))
    return sources


def grep(folder: Path, needles: set[str], skip: tuple[str, ...] = ()) -> list[str]:
    """Files under `folder` (binary, SQLite included) holding any needle."""
    hits = []
    for path in folder.rglob("*"):
        if path.is_file() and not any(part in skip for part in path.relative_to(folder).parts):
            data = path.read_bytes()
            hits += [f"{path.relative_to(folder)}: {n}" for n in needles if n.encode() in data]
    return hits


def test_a_patient_taken_down_leaves_nothing_behind(two_patients, tmp_path):
    wd = tmp_path / "wd"
    assert medtrinity("run", "--workdir", str(wd), "--sources", str(two_patients)).returncode == 0
    triplets = read_parquet(wd / "manifests" / "hosp" / "triplets" / "base-0000.parquet")
    keys = {r["provenance"]["patient_key"] for r in triplets.iter_rows(named=True)}
    assert len(keys) == 2 and None not in keys
    gone_rows = [r for r in triplets.iter_rows(named=True) if "pat2/" in r["provenance"]["source_relpath"]]
    key = gone_rows[0]["provenance"]["patient_key"]
    image_ids = {r["image_id"] for r in gone_rows}
    image_hashes = {r["image_sha256"] for r in gone_rows}
    files = [wd / r["image_uri"] for r in gone_rows]
    assert gone_rows and all(f.exists() for f in files) and grep(wd, image_ids)

    out = medtrinity("takedown", "--sources", str(two_patients), "--source", "hosp", "--patient-key", key, "--workdir", str(wd))
    assert out.returncode == 0, out.stderr
    removed = out.stdout.splitlines()
    assert sum(line.startswith("removed triplets base-0000: ") for line in removed) == len(gone_rows)  # reverse lineage: every derived row
    assert any(line.startswith("removed file images/") for line in removed)
    assert "takedown recorded for hosp (patient_key): 1 item(s)" in removed[-1]
    # nothing of the patient is left: no file, no row, no id or hash in any manifest, cache, preview or the Dagster event log
    assert not any(f.exists() for f in files)
    assert grep(wd, image_ids | image_hashes) == []
    assert grep(wd, {key}, skip=("takedown",)) == []  # only the request itself names the patient key
    after = read_parquet(wd / "manifests" / "hosp" / "triplets" / "base-0000.parquet")
    assert after.height == triplets.height - len(gone_rows) and {r["provenance"]["patient_key"] for r in after.iter_rows(named=True)} == keys - {key}
    quarantine = read_parquet(wd / "quarantine" / "hosp" / "raw" / "base-0000.parquet")
    assert quarantine["reason"].to_list() == ["taken_down"]
    # a fresh export, and a later run, leave it out
    export = tmp_path / "export"
    assert medtrinity("export", "--sources", str(two_patients), "--out", str(export), "--format", "hf", "--workdir", str(wd)).returncode == 0
    assert json.loads((export / "export.json").read_text())["rows"] == after.height and grep(export, image_ids | {key}) == []
    assert medtrinity("run", "--workdir", str(wd), "--sources", str(two_patients)).returncode == 0
    assert grep(wd, image_ids | image_hashes) == []
