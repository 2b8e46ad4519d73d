"""medtrinity_dagster: thin orchestration over medtrinity_core (assets, partitions, IO manager, checks, CLI)."""
