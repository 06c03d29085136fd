"""Examples of using paradex-bus from other programs (run them from the project root)."""
