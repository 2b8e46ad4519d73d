"""Quality: checks over manifests, each returning (passed, metadata) so any orchestrator can report them."""
