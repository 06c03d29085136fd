"""The book-builder process: exact L2 books per market from ``md.paradex.deltas.*``, checkpointed
in KV ``book_checkpoints``, published as ``book.paradex.quotes|depth10|status.<MKT>`` and served
to late joiners on ``book.paradex.snapshot.<MKT>``.

Modules: ``config`` (settings, market ownership / sharding), ``engine`` (the books and every
output decision, no I/O), ``service`` (the process: ordered MD consumer, publishing, snapshot
replies, checkpoints, health), ``publish`` (publisher with extra headers), ``synthetic`` (a seeded
delta flow for tests and the benchmark). The book itself is ``bus.book_client.LocalBook``.
"""

import time

# Taken before the heavy imports, so a restart's recovery time includes them (``python -m
# services.book_builder`` imports this package first; only interpreter start-up comes before).
STARTED_MONOTONIC = time.monotonic()
