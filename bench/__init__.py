"""Benchmarks run by `make bench` (see bench/harness.py)."""
