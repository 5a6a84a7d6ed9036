"""Benchmarks: one module per topic, each runnable as `python -m bench.<name>`; `python -m bench`
runs them all. Each compares against its named baseline in the same run and prints medians and
ratios; measured figures are kept in bench/RESULTS.md."""
