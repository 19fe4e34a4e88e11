"""Benchmarks: `python -m bench NAME [--json]` (see `bench/__main__.py` for the table of names)."""
