"""No output carries a patient identifier: identifiers are planted in DICOM tags (and a private tag),
the whole pipeline runs through the command line, and every file it writes is scanned (Dagster's own
event log excepted)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import polars as pl
from PIL import Image

from .conftest import REPO
from .dicom_factory import IDENTIFIERS, PRIVATE_VALUE, write_seg, write_series


def test_no_identifier_reaches_any_output(tmp_path):
    series = write_series(tmp_path / "src" / "ct")
    write_seg(tmp_path / "src" / "ct" / "seg.dcm", series)
    sources = tmp_path / "src" / "sources.yaml"
    sources.write_text(textwrap.dedent("""\
        version: 1
        sources:
          - name: hospital-ct
            modality: ct
            body_region: abdomen
            license: LicenseRef-unstated
            root: ct
            layout: dicom
            images: '.+\\.dcm'
            label_map: {Liver: liver}
            paths_identify_patients: true
        """))
    workdir = tmp_path / "wd"
    env = {**os.environ, "MEDTRINITY_SALT": "deid-test-salt"}
    out = subprocess.run([sys.executable, "-m", "medtrinity_dagster.cli", "run", "--workdir", str(workdir), "--sources", str(sources), "--select",
                          "raw", "normalized", "rois", "context", "descriptions", "triplets"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    triplets = pl.read_parquet(workdir / "manifests" / "hospital-ct" / "triplets" / "base-0000.parquet")
    assert triplets.height == 5 and triplets["provenance"].struct.field("source_path_hashed").all()

    secrets = [*IDENTIFIERS.values(), PRIVATE_VALUE, "DOE", "JOHNATHAN", "19310412"]
    secrets += [str(getattr(ds, tag)) for ds in series for tag in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID")]
    scanned = 0
    for path in workdir.rglob("*"):
        if not path.is_file() or (workdir / "dagster") in path.parents:
            continue
        data = path.read_bytes()
        scanned += 1
        for secret in secrets:
            assert secret.encode() not in data, f"{secret} found in {path}"
            assert secret.encode("utf-16-le") not in data, f"{secret} found in {path}"
        if path.suffix == ".png":
            with Image.open(path) as img:
                assert not img.text and not img.info.get("exif")  # no text chunks, no metadata
    assert scanned > 10
