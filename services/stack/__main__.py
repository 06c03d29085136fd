"""``python -m services.stack up|down|status``."""

from services.stack.cli import main

main()
