"""Dataset: the joined triplets with provenance, the private lineage index, and (later) exports."""
