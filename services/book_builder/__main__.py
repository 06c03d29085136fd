"""``python -m services.book_builder``: run the book-builder process (settings from the environment)."""

from services.book_builder.service import main

main()
