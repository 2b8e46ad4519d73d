"""No output carries a patient identifier. Identifiers are planted where the code reads them (patient and
study ids it salts, a SEG's segment label and an RTSTRUCT's ROI name it turns into label names, the
folder name of a source whose paths identify patients) and where it must not look (a private tag, the
UIDs); the whole pipeline runs through the command line; then every file written outside the private
`lineage/` folder is scanned as bytes, every Parquet file is decoded and scanned as text, and Dagster's
event log is read through the instance API and scanned too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import polars as pl
from PIL import Image

from .conftest import REPO
from .dicom_factory import (
    IDENTIFIERS,
    PRIVATE_VALUE,
    write_rtstruct,
    write_seg,
    write_series,
)

FOLDER = "DOE_JOHNATHAN_MRN-77341925"  # a patient folder, as PACS exports name them


def test_no_identifier_reaches_any_output(tmp_path):
    root = tmp_path / "src" / "data"
    ct = write_series(root / FOLDER / "ct")
    write_seg(root / FOLDER / "ct" / "seg.dcm", ct, label="Liver DOE")  # free text naming the patient
    pet = write_series(root / FOLDER / "pet", modality="PT")
    write_rtstruct(root / FOLDER / "pet" / "rt.dcm", pet, name="GTV 19310412")  # ... and the birth date
    sources = tmp_path / "src" / "sources.yaml"
    sources.write_text(textwrap.dedent("""\
        version: 1
        sources:
          - name: hospital-ct
            modality: ct
            body_region: abdomen
            license: LicenseRef-unstated
            root: data
            layout: dicom
            images: '.+\\.dcm'
            label_map: {Liver: liver}
            paths_identify_patients: true
        """))
    workdir = tmp_path / "wd"
    env = {**os.environ, "MEDTRINITY_SALT": "deid-test-salt"}
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "run", "--workdir", str(workdir), "--sources", str(sources), "--select",
                          "raw", "normalized", "rois", "context", "descriptions", "triplets"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    triplets = pl.read_parquet(workdir / "manifests" / "hospital-ct" / "triplets" / "base-0000.parquet")
    normalized = pl.read_parquet(workdir / "manifests" / "hospital-ct" / "normalized" / "base-0000.parquet")
    assert normalized.height == 10  # both series, three lesion slices and two negatives each
    assert triplets.height == normalized["duplicate_kind"].is_null().sum() >= 6  # uniform negatives repeat across series
    assert triplets["provenance"].struct.field("source_path_hashed").all()
    labels = {r["label"] for rois in triplets["rois"].to_list() for r in rois}
    assert labels == {"segment 1", "structure 1"}  # the free-text names were withheld, the regions kept
    normalization = [json.loads(n) for n in normalized["normalization"]]
    assert all(n["intensity"].get("withheld_labels") == 1 for n in normalization)

    secrets = [*IDENTIFIERS.values(), PRIVATE_VALUE, "DOE", "JOHNATHAN", "19310412", "1931-04-12", FOLDER]
    secrets += [str(getattr(ds, tag)) for ds in ct + pet for tag in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")]

    def clean(text: bytes, where: str) -> None:
        for secret in secrets:
            assert secret.encode() not in text, f"{secret} found in {where}"
            assert secret.encode("utf-16-le") not in text, f"{secret} found in {where}"

    private = (workdir / "lineage", workdir / "dagster", workdir / "secret")
    scanned = parquet = 0
    for path in workdir.rglob("*"):
        if not path.is_file() or any(folder in path.parents for folder in private):
            continue
        clean(path.read_bytes(), str(path))
        scanned += 1
        if path.suffix == ".parquet":  # compressed: decode, then scan the values
            clean(json.dumps(pl.read_parquet(path).to_dicts(), default=str).encode(), f"decoded {path}")
            parquet += 1
        if path.suffix == ".png":
            with Image.open(path) as img:
                assert not img.text and not img.info.get("exif")  # no text chunks, no metadata
    assert scanned > 20 and parquet >= 12

    # the private lineage index does hold the path: the scan above would have caught it anywhere else
    lineage = pl.concat([pl.read_parquet(p) for p in (workdir / "lineage" / "hospital-ct").glob("*.parquet")])
    assert all(rel.startswith(f"{FOLDER}/") for rel in lineage["source_relpath"])

    from dagster import DagsterInstance
    from dagster._serdes import serialize_value

    instance = DagsterInstance.from_config(str(workdir / "dagster"))
    runs = instance.get_run_records()
    assert len(runs) == 1  # one shard: the CT and the PET series are one item each
    events = 0
    for record in runs:
        for entry in instance.all_logs(record.dagster_run.run_id):
            clean(serialize_value(entry).encode(), f"the event log of run {record.dagster_run.run_id}")
            events += 1
        clean(serialize_value(record.dagster_run).encode(), f"run {record.dagster_run.run_id}")
    assert events > 50
    # ids are built from the salted path: a guessed path cannot be tested against them
    from medtrinity_core.ids import stable_id

    raw = pl.read_parquet(workdir / "manifests" / "hospital-ct" / "raw" / "base-0000.parquet")
    guessed = {stable_id("item", "hospital-ct", f"{FOLDER}/{kind}/img_000.dcm") for kind in ("ct", "pet")}
    assert raw.height == 2 and not guessed & set(raw["item_id"]) and all(r.startswith("path-") for r in raw["relpath"])


def test_free_text_labels_holding_the_patients_name_id_or_dates_are_withheld():
    from pydicom.dataset import Dataset

    from medtrinity_core.imaging.dicom_labels import withhold_identifying

    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.StudyDate = "LI^JOHNATHAN", "MRN-77341925", "19310412", "20240102"
    names = {1: "Liver", 2: "GTV johnathan", 3: "lesion 1931-04-12", 4: "node mrn-77341925", 5: "scan 02.01.2024", 6: "Li_2", 7: "Spleen"}
    shown, withheld = withhold_identifying(names, [ds], "segment")
    assert withheld == 4  # a two-letter name part ("LI") is too short to withhold "Li_2" or "Liver" on
    assert shown == {1: "Liver", 2: "segment 2", 3: "segment 3", 4: "segment 4", 5: "segment 5", 6: "Li_2", 7: "Spleen"}
