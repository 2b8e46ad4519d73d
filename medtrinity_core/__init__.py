"""medtrinity_core: the pipeline's stages as plain functions over typed records (no Dagster here)."""

__version__ = "0.1.0"
