"""Project conventions that a reviewer would otherwise check by hand."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ("schemas", "bus", "services", "bench", "examples", "deploy")


def _modules() -> list[Path]:
    return [p for d in CODE for p in (ROOT / d).rglob("*.py")]


def test_every_module_says_what_it_owns() -> None:
    missing = [str(p.relative_to(ROOT)) for p in _modules() if not ast.get_docstring(ast.parse(p.read_text()))]
    assert missing == []


def test_no_float_conversion_of_prices_or_sizes() -> None:
    pattern = re.compile(r"float\((price|size|qty|quantity|amount|px)")
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _modules()
        if p.parts[len(ROOT.parts)] in ("schemas", "bus", "services")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_only_the_signer_reads_the_private_key_variables() -> None:
    # bench/ is left out: benchmarks start a signer with a fixed throwaway test key.
    readers = sorted(
        str(p.relative_to(ROOT))
        for p in _modules()
        if p.parts[len(ROOT.parts)] != "bench"
        and ("PARADEX_L2_PRIVATE_KEY" in p.read_text() or "PARADEX_L1_PRIVATE_KEY" in p.read_text())
    )
    assert readers and all(r.startswith("services/signer/") for r in readers), readers
