"""The processes of paradex-bus (one package each) and what they share (runtime, venue protocol)."""
