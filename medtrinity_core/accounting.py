"""Every row a stage reads is accounted for: an output row, a quarantine row with a reason, or a named
exclusion (`duplicate`, `proposal_only`, and later `contradiction`, `incomplete`, `taken_down`) counted in the
materialization's metadata. Anything else is a bug, not bad data, and fails the partition."""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from medtrinity_core.errors import MedtrinityError

EXCLUSIONS = ("duplicate", "proposal_only", "contradiction", "incomplete", "taken_down")


class UnaccountedError(MedtrinityError):
    """A stage lost rows without a reason: the partition fails with this message."""


def account(stage: str, unit: str, expected: Iterable[str], produced: Iterable[str], quarantined: Iterable[str],
            excluded: dict[str, Iterable[str]] | None = None) -> dict[str, int]:
    """Check that each expected key (an item's path or id, an image id) is produced, quarantined or
    excluded under a known name; return the counts for the metadata."""
    expected = set(expected)
    produced, quarantined = set(produced) & expected, set(quarantined) & expected
    excluded = {name: set(keys) & expected for name, keys in (excluded or {}).items()}
    unknown = sorted(set(excluded) - set(EXCLUSIONS))
    if unknown:
        raise UnaccountedError(f"{stage}: unknown exclusion {unknown[0]!r} (known: {', '.join(EXCLUSIONS)})")
    covered = produced | quarantined | set().union(*excluded.values())
    lost = sorted(expected - covered)
    if lost:
        raise UnaccountedError(f"{stage}: {len(lost)} of {len(expected)} {unit}s have no output row, quarantine row or named exclusion "
                               f"(first: {lost[0]}); this is a bug in the stage, not bad data")
    counts = {f"{unit}s_in": len(expected), f"{unit}s_out": len(produced), f"{unit}s_quarantined": len(quarantined - produced)}
    counts.update({f"excluded_{name}": len(keys - produced - quarantined) for name, keys in sorted(excluded.items())})
    return counts


def account_images(stage: str, normalized: pl.DataFrame, produced: Iterable[str], quarantined: pl.DataFrame,
                   excluded: dict[str, Iterable[str]] | None = None) -> dict[str, int]:
    """From rois on the unit is the image: each is an output, in quarantine (its item), a duplicate, or
    under another named exclusion (`contradiction`, `incomplete` at triplets)."""
    held = set(quarantined["item_id"].to_list())
    in_quarantine = normalized.filter(pl.col("item_id").is_in(held))["image_id"]
    duplicates = normalized.filter(pl.col("duplicate_kind").is_not_null())["image_id"]
    return account(stage, "image", normalized["image_id"], produced, in_quarantine, {"duplicate": duplicates, **(excluded or {})})
