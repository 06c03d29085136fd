"""The ``pdx`` command line: look at the bus, trade on it, run benchmarks and chaos."""
