"""Developer tools run from the repository root (`make ui-check`), not part of the installed packages."""
