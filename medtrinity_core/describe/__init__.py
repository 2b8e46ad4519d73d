"""Describe: generators that write the five facets; `grounded` states only measured facts and retrieved text."""
