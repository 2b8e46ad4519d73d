"""The verdicts of the pipeline's blocking checks, kept in the work folder.

The checks run in Dagster and their results live in its event log, which this library does not read.
So each blocking check also writes its verdict here (`checks/<source>/<check>/<shard>.json`,
atomically): the check and its stage, passed or not, the severity, the failing expectations with their
row counts and first ids, and the sha256 of the manifest file it judged. Exports trust a partition only
when every blocking check has a passing verdict on the manifest there now (release/gates.py), and
`medtrinity run` re-runs a stage whose verdict is missing or judged another manifest.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

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
    path = wd.manifest_path(source, stage, shard)
    return sha256_bytes(path.read_bytes()) if path.exists() else None


def record_verdict(wd: Workdir, source: str, shard: str, check: str, stage: str, passed: bool, severity: str, metadata: dict) -> dict:
    """Write one check's verdict on one partition, with the digest of the manifest it judged. Only ids
    (hashes) and expectation names are kept: nothing a failing row's text held."""
    failing = [{"expectation": e["expectation"], "failing_rows": e["failing_rows"], "examples": list(e["examples"][:10])}
               for e in metadata.get("errors", [])] if "suite" in metadata else []
    record = {
        "check": check, "stage": stage, "source": source, "shard": shard, "passed": bool(passed), "severity": severity,
        "failing": failing, "summary": brief(check, metadata, severity),
        "manifest": {"path": f"manifests/{source}/{stage}/{shard}.parquet", "sha256": manifest_digest(wd, source, stage, shard)},
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_bytes(verdict_path(wd, source, check, shard), json.dumps(record, indent=1, sort_keys=True).encode())
    return record


def read_verdict(wd: Workdir, source: str, check: str, shard: str) -> dict | None:
    path = verdict_path(wd, source, check, shard)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # unreadable: no verdict, so the partition is unchecked
        return None


def brief(check: str, metadata: dict, severity: str = "ERROR") -> str:
    """What failed, in one clause: a suite's error-severity expectations with their row counts and first
    ids (warnings when only they failed), or the faithfulness figures against their thresholds."""
    if "suite" in metadata:
        failing = metadata.get("errors") or (metadata.get("warnings") if severity != "ERROR" else []) or []
        return "; ".join(f"{e['expectation']}: {e['failing_rows']} row(s), e.g. {', '.join(e['examples'][:3])}" for e in failing)
    if "mean_faithfulness" in metadata:
        return (f"mean faithfulness {metadata['mean_faithfulness']} (at least {metadata['min_mean_faithfulness']}), "
                f"contradiction rate {metadata['contradiction_rate']} (at most {metadata['max_contradiction_rate']})")
    return ", ".join(f"{k}={v}" for k, v in list(metadata.items())[:4] if not isinstance(v, (list, dict)))
