"""The code location `dagster dev -w workspace.yaml` loads.

MEDTRINITY_SOURCES names the sources file (default examples/sources.yaml) and MEDTRINITY_WORKDIR the
work folder (default ./data); `make ui` sets both, and DAGSTER_HOME to <workdir>/dagster.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

from medtrinity_core.config import load_sources
from medtrinity_dagster.build import build_definitions

defs = build_definitions(
    load_sources(os.environ.get("MEDTRINITY_SOURCES", "examples/sources.yaml")),
    os.environ.get("MEDTRINITY_WORKDIR", "data"),
)
