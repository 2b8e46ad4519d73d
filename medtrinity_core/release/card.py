"""The dataset card of an export: `README.md` with the Hugging Face card header, `croissant.json`
(JSON-LD that `mlcroissant` loads) over `metadata.parquet` (one row per record, every format), plots as
PNG (no timestamps), and `export.json`, the machine-readable summary `verify` checks counts against."""

from __future__ import annotations

import io
import json
from collections import Counter
from pathlib import Path

from medtrinity_core.release.checksums import SUMMARY, sha256_file
from medtrinity_core.release.collect import Collection, Filters
from medtrinity_core.release.licenses import group_of, obligations
from medtrinity_core.storage import atomic_write_bytes

PLOTS = ("modality", "roi_area_ratio", "description_length", "faithfulness", "completeness")
META_COLUMNS = ("id", "image_id", "split", "source", "modality", "license", "caption", "faithfulness", "completeness", "rois")
SCORES = ("faithfulness", "completeness")


def counts(rows: list[dict]) -> dict[str, dict]:
    def tally(values) -> dict:
        return dict(sorted(Counter(values).items()))

    return {
        "split": tally(r["split"] for r in rows), "modality": tally(r["modality"] for r in rows), "source": tally(r["source"] for r in rows),
        "license": tally(r["license"] for r in rows), "license_group": tally(group_of(r["license"]) for r in rows),
        "label": tally(roi["term"] or roi["label"] for r in rows for roi in r["rois"]), "roi_method": tally(roi["method"] for r in rows for roi in r["rois"]),
    }


def versions(rows: list[dict], embedder: str | None) -> dict[str, list[str]]:
    def distinct(key) -> list[str]:
        return sorted({str(r["provenance"][key]) for r in rows if r["provenance"].get(key)})

    return {"prompt": distinct("template_version"), "generator": distinct("generator"), "generator_model": distinct("generator_model"),
            "knowledge_base": distinct("kb_version"), "embedder": [embedder] if embedder else [], "package": distinct("package_version")}


def plots(rows: list[dict]) -> dict[str, bytes]:
    """PNG bytes per plot, 600 x 400 px, rendered with Agg and saved without metadata."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = {
        "modality": Counter(r["modality"] for r in rows),
        "roi_area_ratio": [roi["area_ratio"] for r in rows for roi in r["rois"]],
        "description_length": [len(r["description"].split()) for r in rows],
        "faithfulness": [r["faithfulness"] for r in rows],
        "completeness": [r.get("completeness") or 0.0 for r in rows],
    }
    titles = {"modality": "Images per modality", "roi_area_ratio": "ROI area / image area", "description_length": "Description length (words)",
              "faithfulness": "Faithfulness (1 - contradicted / claims)", "completeness": "Completeness (facts stated / required)"}
    out = {}
    for name in PLOTS:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        if name == "modality":
            keys = sorted(data[name])
            ax.bar(keys, [data[name][k] for k in keys], color="#4C72B0")
            ax.tick_params(axis="x", labelrotation=30)
        else:
            ax.hist(data[name] or [0], bins=20, range=(0, 1) if name in ("roi_area_ratio", *SCORES) else None, color="#4C72B0")
        ax.set_title(titles[name])
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        plt.close(fig)
        out[name] = buf.getvalue()
    return out


def write_metadata(out: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"id": r["triplet_id"], "image_id": r["image_id"], "split": r["split"], "source": r["source"], "modality": r["modality"],
                                   "license": r["license"], "caption": r["description"], "faithfulness": r["faithfulness"], "completeness": r.get("completeness"), "rois": len(r["rois"])}
                                  for r in rows],
                                 schema=pa.schema([(c, pa.int64() if c == "rois" else pa.float64() if c in SCORES else pa.string()) for c in META_COLUMNS]))
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf, compression="zstd")
    atomic_write_bytes(out / "metadata.parquet", buf.getvalue().to_pybytes())


def write_croissant(out: Path, name: str, licenses: list[str], citation: str) -> None:
    import mlcroissant as mlc

    types = {"faithfulness": mlc.DataType.FLOAT, "completeness": mlc.DataType.FLOAT, "rois": mlc.DataType.INTEGER}
    fields = [mlc.Field(id=f"records/{c}", name=c, data_types=[types.get(c, mlc.DataType.TEXT)],
                        source=mlc.Source(file_object="metadata.parquet", extract=mlc.Extract(column=c))) for c in META_COLUMNS]
    metadata = mlc.Metadata(
        name=name, description="Image-ROI-description triplets exported by medtrinity; one record per image (see README.md).",
        url="https://github.com/medtrinity/medtrinity", license=licenses, version="1.0.0", cite_as=citation,
        distribution=[mlc.FileObject(id="metadata.parquet", name="metadata.parquet", content_url="metadata.parquet",
                                     encoding_formats=["application/x-parquet"], sha256=sha256_file(out / "metadata.parquet"))],
        record_sets=[mlc.RecordSet(id="records", name="records", fields=fields)],
    )
    atomic_write_bytes(out / "croissant.json", json.dumps(metadata.to_json(), indent=1, sort_keys=True, default=str).encode())


def _scores_section(rows: list[dict]) -> str:
    """Both numbers over the exported rows, and their contradictions by type (none unless a source's
    min_faithfulness let contradicted rows through)."""
    if not rows:
        return "No rows.\n"
    mean = {k: sum(r.get(k) or 0.0 for r in rows) / len(rows) for k in SCORES}
    kinds = Counter(c["type"] for r in rows for c in r.get("contradictions") or [])
    stated = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"
    return (f"Every description is read against the facts its generator was given: faithfulness = 1 - contradicted claims / claims made, "
            f"completeness = required facts stated / required facts. Mean faithfulness {mean['faithfulness']:.3f}, mean completeness "
            f"{mean['completeness']:.3f}; contradictions in the exported rows, by type: {stated}.\n")


def _table(title: str, values: dict) -> str:
    return f"| {title} | count |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in values.items())


def _checks_section(collection: Collection) -> str:
    """The pipeline's blocking checks and the export's patient-data scan: what they held back, or, with
    --include-failed-checks, what a person chose to export despite them."""
    if not collection.gates:
        return "Every exported partition passed the pipeline's blocking checks on its current manifests; the export's patient-data scan found nothing.\n"
    if collection.included_failed:
        head = "**Included despite failed or missing checks** (`--include-failed-checks`: a person reviewed these rows):"
    else:
        head = "Left out by the pipeline's blocking checks and the export's patient-data scan:"
    return head + "\n\n" + "".join(f"- {g.line(collection.included_failed)}\n" for g in collection.gates)


def write_card(out: Path, fmt: str, files: list[str], collection: Collection, filters: Filters, sources: list, embedder: str | None) -> dict:
    rows = collection.rows
    tally, used = counts(rows), sorted({r["source"] for r in rows})
    summary = {
        "format": fmt, "files": files, "rows": len(rows), "counts": tally, "dropped": dict(sorted(collection.dropped.items())),
        "filters": {"license_group": filters.license_group, "licenses": list(filters.licenses), "min_faithfulness": filters.min_faithfulness,
                    "min_completeness": filters.min_completeness, "sources": list(filters.sources), "fractions": dict(filters.fractions), "include_failed_checks": filters.include_failed_checks},
        "checks": {"include_failed_checks": collection.included_failed, "partitions": [g.as_dict(collection.included_failed) for g in collection.gates]},
        "quarantine": collection.quarantine, "decontaminated": collection.decontaminated, "versions": versions(rows, embedder),
    }
    atomic_write_bytes(out / SUMMARY, json.dumps(summary, indent=1, sort_keys=True).encode())
    for name, png in plots(rows).items():
        atomic_write_bytes(out / "plots" / f"{name}.png", png)
    write_metadata(out, rows)
    licenses = sorted(tally["license"])
    by_name = {s.name: s for s in sources}
    citation = "; ".join(by_name[n].citation for n in used if by_name[n].citation) or "medtrinity"
    write_croissant(out, "medtrinity-export", licenses, citation)
    n = len(rows)
    size = "n<1K" if n < 1000 else "1K<n<10K" if n < 10_000 else "10K<n<100K" if n < 100_000 else "100K<n<1M" if n < 1_000_000 else "n>1M"
    header = ["---", f"license: {'other' if len(licenses) != 1 or licenses[0].startswith('LicenseRef-') else licenses[0].lower()}",
              "license_details: " + json.dumps(", ".join(licenses)), "task_categories:", "- image-to-text", "- image-segmentation",
              "- visual-question-answering", "tags:", "- medical", "- multimodal", "size_categories:", f"- {size}"]
    if fmt in ("hf", "medtrinity"):
        header += ["configs:", "- config_name: default", "  data_files:"] + [f"  - split: {s}\n    path: data/{s}-*.parquet" for s in tally["split"]]
    header.append("---")
    source_lines = "".join(
        f"| {s} | {by_name[s].modality} | {by_name[s].license} | {', '.join(obligations(by_name[s].license))} | {by_name[s].citation or ''} |\n" for s in used)
    plot_lines = "".join(f"![{p}](plots/{p}.png)\n" for p in PLOTS)
    version_lines = "".join(f"- {k}: {', '.join(v) or 'n/a'}\n" for k, v in summary["versions"].items())
    body = f"""
# medtrinity export ({fmt})

Image-ROI-description triplets: each medical image with its regions of interest (boxes and RLE masks,
measured location, size and appearance) and a multigranular description scored for faithfulness to
those measurements, with full provenance. {n} records; format `{fmt}` (files listed in `{SUMMARY}`,
checksums in `SHA256SUMS`: run `medtrinity verify DIR`).

## Intended use and known limitations

For training and evaluating medical vision-language models (captioning, grounding, VQA). Not for
clinical decisions. Descriptions are generated from measured regions and retrieved passages: they state
what was measured, not a diagnosis; annotations come from the sources and may be wrong
(`annotation_suspect` rows in the pipeline flag measured appearances that contradict the expected one).
Licences differ per row: each record carries its own, and the obligations below apply.

## Sources

| source | modality | licence | obligations | citation |
|---|---|---|---|---|
{source_lines}
## Counts

{_table("split", tally["split"])}
{_table("modality", tally["modality"])}
{_table("source", tally["source"])}
{_table("licence group", tally["license_group"])}
{_table("canonical label", tally["label"])}
{_table("ROI method", tally["roi_method"])}
## Faithfulness

{_scores_section(rows)}
Left out by the export's filters: {json.dumps(summary["dropped"]) if summary["dropped"] else "nothing"}.
{_checks_section(collection)}
Quarantined items in the pipeline, by reason: {json.dumps(collection.quarantine) if collection.quarantine else "none"}.
Images removed as benchmark (decontamination) duplicates, per source: {json.dumps(collection.decontaminated)}.

## Plots

{plot_lines}
## Versions

{version_lines}
The same records are described in `croissant.json` (Croissant 1.0) over `metadata.parquet`.
"""
    atomic_write_bytes(out / "README.md", ("\n".join(header) + "\n" + body).encode())
    return summary
