"""Sources: the sources file (the user's main input), item discovery, shard plans, the raw inventory."""
