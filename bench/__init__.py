"""Benchmarks (issue 6): `python -m bench fanout`; see bench/README.md."""
