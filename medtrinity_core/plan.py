"""The resolved plan (`medtrinity sources validate FILE --plan`): the sources file with every default filled
in, each source's settings grouped under the stage that reads them (with that stage's code version), as
nnU-Net's plans file lets a person read and edit what will run. The plan is itself a sources file: it
validates and loads to the same configuration."""

from __future__ import annotations

import yaml

from medtrinity_core.config import resolved_document
from medtrinity_core.pipeline import REGISTRY


def _dump(mapping: dict, indent: str) -> list[str]:
    text = yaml.safe_dump(mapping, sort_keys=False, default_flow_style=False, allow_unicode=True, width=10_000)
    return [indent + line for line in text.splitlines()]


def plan_yaml(sources_file, registry=REGISTRY) -> str:
    """The plan as YAML text (comments name each stage; they change nothing when it is read back)."""
    doc = resolved_document(sources_file)
    entries = doc.pop("sources")
    lines = [
        f"# The resolved plan of {sources_file.path}: every default filled in, paths absolute.",
        "# Each source's settings are grouped by the stage that reads them; the stage's code version (its",
        "# settings, implementation version and upstream stages) decides what `medtrinity run` re-runs.",
        *_dump(doc, ""),
        "sources:",
    ]
    for src, entry in zip(sources_file.sources, entries, strict=True):
        remaining = dict(entry)
        lines.append(f"  - name: {yaml.safe_dump(remaining.pop('name'), default_style=None).splitlines()[0]}")
        for stage in registry.chain(src):
            keys = [k for k in dict.fromkeys(k.split(".")[0] for k in stage.settings) if k in remaining]  # `section.key`: the section's place
            lines.append(f"    # {stage.name} (code version {registry.code_version(src, stage)})")
            if keys:
                lines += _dump({k: remaining.pop(k) for k in keys}, "    ")
        if remaining:
            lines.append("    # read by the run and the checks (max_quarantine_share), or by no stage yet")
            lines += _dump(remaining, "    ")
    return "\n".join(lines) + "\n"
