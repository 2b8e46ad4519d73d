"""What an export trusts: the verdicts of the pipeline's blocking checks, recorded in the work folder,
and the patient-data scan re-run on every row it writes.

Each blocking check writes its verdict into the work folder (quality/verdicts.py). An export takes a
partition's triplets only when every blocking check of every stage has a verdict on the manifest now in the work
folder and none failed at error severity. A partition whose checks never ran (a run killed between
materialization and check, a work folder from before verdicts were recorded) or ran on an earlier
version of a manifest (re-materialized without a re-check) is unchecked and left out the same way.
`--include-failed-checks` takes them anyway, for a person who has reviewed them; the card records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medtrinity_core.quality.suites import finding_kind, patient_data_findings
from medtrinity_core.quality.verdicts import BLOCKING, judges_current, read_verdict
from medtrinity_core.storage import Workdir


@dataclass
class Gate:
    """One reason a partition's rows (or some of them) are not trusted."""

    source: str
    shard: str
    check: str  # a blocking check's name, or `patient_data_scan` (the export's own scan)
    status: str  # failed | not run | stale | found | unreadable
    detail: str
    rows: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        if self.status == "failed":
            return f"{self.check} failed ({self.detail})" if self.detail else f"{self.check} failed"
        if self.status == "not run":
            return f"{self.check} never ran on it (unchecked)"
        if self.status == "unreadable":
            return f"its triplets manifest cannot be read ({self.detail})"
        if self.status == "stale":
            return f"{self.check} judged an earlier {BLOCKING.get(self.check, '')} manifest, not the one there now (unchecked)"
        return f"the export's patient-data scan found {self.detail}"

    def line(self, included: bool) -> str:
        what = f"{self.rows} row(s) of {self.source} shard {self.shard}"
        return f"included {what} (--include-failed-checks): {self.reason}" if included else f"left out {what}: {self.reason}"

    def as_dict(self, included: bool) -> dict:
        return {"source": self.source, "shard": self.shard, "check": self.check, "status": self.status, "rows": self.rows,
                "reason": self.reason, "examples": self.examples[:10], "included": included, "line": self.line(included)}


def partition_gates(wd: Workdir, source: str, shard: str, triplets_digest: str) -> list[Gate]:
    """The blocking checks that do not vouch for this partition: failed at error severity, never run, or
    run on another version of the manifest than the one there now (`triplets_digest`: the bytes the
    export read)."""
    gates = []
    for check, stage in BLOCKING.items():
        verdict = read_verdict(wd, source, check, shard)
        if verdict is None:
            gates.append(Gate(source, shard, check, "not run", ""))
        elif not judges_current(verdict, wd, source, stage, shard, triplets_digest if stage == "triplets" else None):
            gates.append(Gate(source, shard, check, "stale", ""))
        elif not verdict.get("passed") and verdict.get("severity") == "ERROR":
            examples = list(dict.fromkeys(x for f in verdict.get("failing") or [] for x in f.get("examples") or []))  # each id once
            gates.append(Gate(source, shard, check, "failed", verdict.get("summary") or "", examples=examples))
    return gates


def text_fields(row: dict):
    """(field, text) of every value of a triplet row that a person or a path wrote: the description,
    caption and facets, ROI labels and locations, and of the provenance the source path, the annotation
    matches and the passages' foci. Ids, hashes, versions, model names and passage ids are machine-made
    (a date-pinned `gpt-4o-2024-08-06` is no birth date), and citations are the sources file's and the
    corpora's own text (`Data in Brief 28:104863`): none is read."""
    prov = row.get("provenance") or {}
    yield "description", row.get("description")
    yield "coarse_caption", row.get("coarse_caption")
    for key, text in (row.get("facets") or {}).items():
        yield f"facets.{key}", text
    for roi in row.get("rois") or []:
        yield "rois.label", roi.get("label")
        yield "rois.location", roi.get("location")
    yield "provenance.source_relpath", None if prov.get("source_path_hashed") else prov.get("source_relpath")
    for match in prov.get("annotation_matches") or []:
        yield "provenance.annotation_matches", match.get("match")
    for passage in prov.get("passages") or []:
        yield "provenance.passages.focus", passage.get("focus")


def row_findings(row: dict) -> list[str]:
    """The patient-data scan over a row's text fields, each finding named by its kind and field only
    (`person name in provenance.source_relpath`): what it matched is never repeated, since these lines go
    to the terminal, the event log and the published card."""
    return [f"{finding_kind(finding)} in {where}" for where, text in text_fields(row) if text for finding in patient_data_findings(text)]
