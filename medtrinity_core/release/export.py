"""One call per export: collect the rows, write the format, the card and the checksums. An existing
export in the folder is replaced whole; a folder holding anything else is refused."""

from __future__ import annotations

import shutil
from pathlib import Path

from medtrinity_core.errors import MedtrinityError
from medtrinity_core.release.card import write_card
from medtrinity_core.release.checksums import SUMS, write_sums
from medtrinity_core.release.collect import Filters, collect
from medtrinity_core.release.formats import ALIASES, FORMATS, WRITERS
from medtrinity_core.storage import Workdir


def _embedder(sources_file, workdir: Workdir) -> str | None:
    try:
        from medtrinity_core.knowledge.store import open_collection

        collection = open_collection(sources_file.retrieval, workdir.chroma)
        return (collection.metadata or {}).get("model") if collection is not None else None
    except Exception:  # noqa: BLE001 - the card then says n/a; an unreachable store does not stop an export
        return None


def _prepare(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / SUMS).is_file():
            raise MedtrinityError(f"{out} is not empty and holds no export ({SUMS} missing): choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export(workdir: Workdir, sources_file, out: Path, fmt: str, filters: Filters) -> dict:
    """Writes the export and returns its summary (counts, files, versions)."""
    fmt = ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise MedtrinityError(f"format {fmt!r} is not one of {', '.join(FORMATS)} (or parquet, an alias of hf)")
    collection = collect(workdir, [s.name for s in sources_file.sources], filters)
    _prepare(out)
    files = WRITERS[fmt](workdir, collection.rows, out)
    summary = write_card(out, fmt, files, collection, filters, list(sources_file.sources), _embedder(sources_file, workdir))
    write_sums(out)
    return summary
