"""The dataset-level `exports` asset: every source's triplets exported in the configured formats, with
the card's counts and plots as its metadata."""


from pathlib import Path

import dagster as dg

from medtrinity_core.release.collect import Filters
from medtrinity_core.sources.schema import SourcesFile
from medtrinity_dagster.resources import WorkdirResource


class ExportConfig(dg.Config):
    """Formats and filters of the export (the `medtrinity export` options)."""

    formats: list[str] = ["hf"]  # noqa: RUF012 - a pydantic field: each config gets its own copy
    out: str = ""  # default: <workdir>/exports/<format>
    license_group: str = "all"
    licenses: list[str] = []  # noqa: RUF012 - a pydantic field
    min_faithfulness: float | None = None
    min_completeness: float | None = None
    sources: list[str] = []  # noqa: RUF012 - a pydantic field
    include_failed_checks: bool = False  # also partitions whose blocking checks failed or never ran (reviewed by a person)


def build_exports_asset(sources: SourcesFile) -> dg.AssetsDefinition:
    @dg.asset(key="exports", group_name="release", deps=[dg.AssetKey([s.name, "triplets"]) for s in sources.sources], kinds={"parquet"},
              description="The dataset in the formats trainers read (hf, medtrinity, webdataset, llava, coco), with patient-level splits, a card and checksums")
    def exports(context: dg.AssetExecutionContext, config: ExportConfig, workdir: WorkdirResource) -> dg.MaterializeResult:
        from medtrinity_core.release.card import (
            PLOTS,  # the formats' and plots' libraries load with the asset, not the Definitions
        )
        from medtrinity_core.release.export import export
        from medtrinity_core.roi.preview import markdown_image

        wd = workdir.get()
        if not config.formats:
            raise dg.Failure("exports: name at least one format (hf, medtrinity, webdataset, llava, coco)")
        filters = Filters(license_group=config.license_group, licenses=tuple(config.licenses), min_faithfulness=config.min_faithfulness,
                          min_completeness=config.min_completeness, sources=tuple(config.sources),
                          include_failed_checks=config.include_failed_checks)
        metadata: dict = {}
        for fmt in config.formats:
            out = Path(config.out) / fmt if config.out else Path(str(wd.root)) / "exports" / fmt
            summary = export(wd, sources, out, fmt, filters)
            metadata[f"{fmt}_path"] = dg.MetadataValue.path(str(out))
            metadata[f"{fmt}_files"] = len(summary["files"])
        metadata.update({
            "rows": summary["rows"], "dropped": dg.MetadataValue.json(summary["dropped"]),
            **{f"count_{k}": dg.MetadataValue.json(v) for k, v in summary["counts"].items() if k != "label"},
            "quarantine": dg.MetadataValue.json(summary["quarantine"]), "decontaminated": dg.MetadataValue.json(summary["decontaminated"]),
            "versions": dg.MetadataValue.json(summary["versions"]),
            "checks": dg.MetadataValue.json(summary["checks"]),
            "left_out_by_checks": sum(p["rows"] for p in summary["checks"]["partitions"] if not p["included"]),
        })
        for partition in summary["checks"]["partitions"]:
            context.log.warning(partition["line"])
        for plot in PLOTS:
            metadata[f"plot_{plot}"] = dg.MetadataValue.md(markdown_image((out / "plots" / f"{plot}.png").read_bytes(), plot.replace("_", " ")))
        return dg.MaterializeResult(metadata=metadata)

    return exports
