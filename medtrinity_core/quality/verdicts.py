"""The verdicts of the pipeline's blocking checks, kept in the work folder.

The checks run in Dagster and their results live in its event log, which this library does not read.
So each blocking check also writes its verdict here (`checks/<source>/<check>/<shard>.json`,
atomically): the check and its stage, passed or not, the severity, the failing expectations with their
row counts and first ids, and the sha256 (and size and modification time) of the manifest file it
judged. Exports trust a partition only
when every blocking check has a passing verdict on the manifest there now (release/gates.py), and
`medtrinity run` re-runs a stage whose verdict is missing or judged another manifest.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from medtrinity_core.ids import sha256_bytes
from medtrinity_core.storage import Workdir, atomic_write_bytes

# The blocking checks per stage, in the order the stages run (medtrinity_dagster.factory defines them
# with blocking=True; a test holds the two lists equal).
BLOCKING = {"normalized_suite": "normalized", "rois_suite": "rois", "faithfulness": "descriptions", "descriptions_suite": "descriptions",
            "triplets_suite": "triplets"}


def verdict_path(wd: Workdir, source: str, check: str, shard: str):
    return wd.root / "checks" / source / check / f"{shard}.json"


def manifest_digest(wd: Workdir, source: str, stage: str, shard: str) -> str | None:
    """The sha256 of a partition's manifest file as it is now; None when there is none."""
    try:
        return sha256_bytes(wd.manifest_path(source, stage, shard).read_bytes())
    except OSError:  # none, or not a file
        return None


def manifest_stamp(wd: Workdir, source: str, stage: str, shard: str) -> dict | None:
    """The manifest file's size and modification time: a manifest is written whole, by rename, so a new
    one has a new stamp. Comparing stamps costs a stat, not a read of every manifest on every run."""
    try:
        stat = wd.manifest_path(source, stage, shard).stat()
    except OSError:
        return None
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def judges_current(verdict: dict | None, wd: Workdir, source: str, stage: str, shard: str, digest: str | None = None) -> bool:
    """Whether a verdict judged the manifest there now: the same stamp, or (a copied work folder has new
    modification times) the same sha256. `digest`: the sha256 of the bytes a caller already read."""
    recorded = (verdict or {}).get("manifest") or {}
    if not recorded.get("sha256"):
        return False
    if digest is not None:
        return recorded["sha256"] == digest
    stamp = manifest_stamp(wd, source, stage, shard)
    if stamp is None:
        return False
    if (recorded.get("size"), recorded.get("mtime_ns")) == (stamp["size"], stamp["mtime_ns"]):
        return True
    return recorded["sha256"] == manifest_digest(wd, source, stage, shard)


def record_verdict(wd: Workdir, source: str, shard: str, check: str, stage: str, passed: bool, severity: str, metadata: dict) -> dict:
    """Write one check's verdict on one partition, with the digest of the manifest it judged. Only ids
    (hashes) and expectation names are kept: nothing a failing row's text held."""
    if "suite" in metadata:
        failing = [{"expectation": e["expectation"], "failing_rows": e["failing_rows"], "examples": list(e["examples"][:10])}
                   for e in metadata.get("errors", [])]
    else:
        failing = [] if passed else faithfulness_failing(metadata)
    record = {
        "check": check, "stage": stage, "source": source, "shard": shard, "passed": bool(passed), "severity": severity,
        "failing": failing, "summary": brief(check, metadata, severity),
        "manifest": {"path": f"manifests/{source}/{stage}/{shard}.parquet", "sha256": manifest_digest(wd, source, stage, shard),
                     **(manifest_stamp(wd, source, stage, shard) or {})},
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(verdict_path(wd, source, check, shard), json.dumps(record, indent=1, sort_keys=True).encode())
    return record


def read_verdict(wd: Workdir, source: str, check: str, shard: str) -> dict | None:
    path = verdict_path(wd, source, check, shard)
    if not path.exists():
        return None
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError):  # unreadable: no verdict, so the partition is unchecked
        return None
    return verdict if _well_formed(verdict) else None


def _well_formed(verdict) -> bool:
    """A verdict as record_verdict writes it; anything else (an edited or damaged file) is no verdict, so
    the partition is unchecked rather than a crash or, worse, trusted."""
    if not isinstance(verdict, dict) or not isinstance(verdict.get("manifest"), dict):
        return False
    failing = verdict.get("failing")
    return (isinstance(verdict.get("passed"), bool) and verdict.get("severity") in ("ERROR", "WARN")
            and isinstance(failing, list) and all(isinstance(f, dict) and isinstance(f.get("examples", []), list) for f in failing))


def _figure(value) -> str:
    return str(round(value, 3)) if isinstance(value, float) else str(value)


def _plain(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_figure(v)}" for k, v in list(value.items())[:5]) + (", ..." if len(value) > 5 else "") + "}"
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value[:3]) + (f" (and {len(value) - 3} more)" if len(value) > 3 else "")
    return _figure(value)


def _worst(metadata: dict) -> list[dict]:
    """The worst rows the faithfulness check named (contradicted first, then least complete): those with a
    contradiction or under the partition's completeness threshold when any is."""
    worst = [w for w in metadata.get("worst") or [] if isinstance(w, dict) and w.get("image_id")]
    minimum = metadata.get("min_mean_completeness")
    under = [w for w in worst if w.get("contradictions") or (isinstance(w.get("completeness"), (int, float)) and minimum is not None and w["completeness"] < minimum)]
    return under or worst


def faithfulness_failing(metadata: dict) -> list[dict]:
    """A failed faithfulness check as failing expectations, like a suite's: each threshold it missed
    with the worst rows it named (image ids; a contradiction's text is not kept)."""
    if "mean_faithfulness" not in metadata:
        return []
    worst = _worst(metadata)
    failing, n = [], metadata.get("descriptions", len(worst))
    minimum, maximum = metadata.get("min_mean_completeness"), metadata.get("max_contradiction_rate")
    if minimum is not None and metadata.get("mean_completeness") is not None and metadata["mean_completeness"] < minimum:
        failing.append({"expectation": f"mean completeness at least {_figure(minimum)}", "failing_rows": n,
                        "examples": [w["image_id"] for w in worst][:10]})
    rate = metadata.get("contradiction_rate")
    if maximum is not None and rate is not None and rate > maximum:
        contradicted = [w["image_id"] for w in worst if w.get("contradictions")]
        failing.append({"expectation": f"contradiction rate at most {_figure(maximum)}", "failing_rows": round(rate * n) if isinstance(n, int) else n,
                        "examples": (contradicted or [w["image_id"] for w in worst])[:10]})
    if not failing:  # failed on something the figures do not show: still name the worst rows
        failing.append({"expectation": "faithfulness", "failing_rows": len(worst), "examples": [w["image_id"] for w in worst][:10]})
    return failing


def brief(check: str, metadata: dict, severity: str = "ERROR") -> str:
    """What failed, in one line: a suite's error-severity expectations with their row counts and first
    ids (warnings when only they failed), or the faithfulness figures against their thresholds and the
    worst rows with their scores (`worst: img-1 (0.4), img-2 (0.55)`); else the metadata's plain values.
    The one formatter of a check's result: the verdict's summary and `medtrinity run`'s line."""
    if "suite" in metadata:
        failing = metadata.get("errors") or (metadata.get("warnings") if severity != "ERROR" else []) or []
        text = "; ".join(f"{e['expectation']}: {e['failing_rows']} row(s), e.g. {', '.join(e['examples'][:3])}" for e in failing)
    elif "mean_faithfulness" in metadata:
        figures = [f"mean faithfulness {_figure(metadata['mean_faithfulness'])}"]
        if "mean_completeness" in metadata:
            figures.append(f"mean completeness {_figure(metadata['mean_completeness'])}"
                           + (f" (at least {_figure(metadata['min_mean_completeness'])})" if "min_mean_completeness" in metadata else ""))
        if "contradiction_rate" in metadata:
            figures.append(f"contradiction rate {_figure(metadata['contradiction_rate'])}"
                           + (f" (at most {_figure(metadata['max_contradiction_rate'])})" if "max_contradiction_rate" in metadata else ""))
        if "descriptions" in metadata:
            figures.append(f"over {metadata['descriptions']} description(s)")
        worst = ", ".join(f"{w['image_id']} ({_figure(w.get('faithfulness'))}" + (f"/{_figure(w['completeness'])}" if "completeness" in w else "") + ")"
                          for w in _worst(metadata)[:3])
        text = ", ".join(figures) + (f"; worst: {worst}" if worst else "")
    else:  # another check (quarantine_share, lineage_audit): its figures, and the first few of its lists
        text = ", ".join(f"{k}={_plain(v)}" for k, v in metadata.items() if v not in ([], {}, None))
    return " ".join(text.split())  # one line, whatever the metadata holds
