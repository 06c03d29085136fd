"""Execution state shared by the order router, the reconciler and the CLI: the EXEC projection."""
