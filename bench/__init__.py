"""Benchmarks: `python -m bench fanout|webhooks|flows` (bench/README.md, figures in
bench/RESULTS.md). They use the product and the simulator, never tests/."""
