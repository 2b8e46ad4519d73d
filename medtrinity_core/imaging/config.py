"""The imaging stage's checks of a sources file: the CT window presets a source names (`window`,
`label_windows`) must be ones `medtrinity_core.imaging.intensity` knows."""

from __future__ import annotations

from medtrinity_core.imaging.intensity import CT_WINDOWS
from medtrinity_core.sources.schema import Locator, SourcesFile


def validate(sources_file: SourcesFile, locate: Locator) -> SourcesFile:
    """Raises `SourcesFileError` naming the line of the first unknown window preset; returns the file unchanged."""
    names = ", ".join(CT_WINDOWS)
    for i, src in enumerate(sources_file.sources):
        if src.window is not None and src.window not in CT_WINDOWS:
            raise locate.error(("sources", i, "window"), f"'{src.window}' is not one of {names}")
        for label, preset in src.label_windows:
            if preset not in CT_WINDOWS:
                raise locate.error(("sources", i, "label_windows", label), f"'{preset}' is not one of {names}")
    return sources_file
