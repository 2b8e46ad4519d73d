"""Licence groups from SPDX ids, and the obligations each licence puts on a user of the data."""

from __future__ import annotations

GROUPS = ("commercial", "noncommercial", "all")
COMMERCIAL_PREFIXES = ("CC0-", "CC-BY-", "BSD-", "MIT", "Apache-", "ODC-By", "PDDL", "CDLA-Permissive")


def group_of(license_id: str) -> str:
    """commercial (CC0, CC-BY, CC-BY-SA, BSD, MIT, Apache, ...) | noncommercial (-NC licences) |
    other (LicenseRef-* and research-only terms: only in `all`)."""
    lid = license_id or ""
    if lid.startswith("LicenseRef-"):
        return "other"
    if "-NC" in lid:
        return "noncommercial"
    if lid.startswith(COMMERCIAL_PREFIXES) or lid in ("MIT", "CC0-1.0"):
        return "commercial"
    return "other"


def allowed(license_id: str, group: str) -> bool:
    """Whether a row under `license_id` belongs in an export cut for `group`."""
    mine = group_of(license_id)
    return {"commercial": mine == "commercial", "noncommercial": mine in ("commercial", "noncommercial"), "all": True}[group]


def obligations(license_id: str) -> list[str]:
    lid = license_id or ""
    if lid.startswith("LicenseRef-"):
        return ["custom terms: read the source's licence note before any use"]
    out = []
    if lid.startswith(("CC-BY", "BSD-", "MIT", "Apache-", "ODC-By")):
        out.append("attribution")
    if "-SA" in lid:
        out.append("share-alike")
    if "-NC" in lid:
        out.append("non-commercial use only")
    if "-ND" in lid:
        out.append("no derivatives")
    if not out and lid.startswith(("CC0", "PDDL")):
        return ["none (public domain dedication)"]
    return out
