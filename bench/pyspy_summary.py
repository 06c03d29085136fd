"""Summarise a py-spy ``--format raw`` profile (collapsed stacks): where a busy process spends time.

``python bench/pyspy_summary.py PROFILE.txt [--top N]``

py-spy (``py-spy record -f raw -o PROFILE.txt -p PID``) attaches to a running service without
changing it, which is how ``docs/performance.md`` profiles the order router and the signer while
``bench/order_bench.py`` drives them. By default py-spy leaves out idle samples (threads waiting in
the event loop), so the shares below are shares of the time the process was busy. Printed: self
time per function (the leaf of each stack) and per top-level package, and inclusive time of the
project's own functions (what each of our steps costs, callees included).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:)]+)(?::\d+)?\)$")
_OWN_PACKAGES = ("bus", "services", "schemas")


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _split(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip(), "?"
    return m.group("func"), _short(m.group("file"))


def summarise(text: str) -> tuple[int, Counter[tuple[str, str]], Counter[str], Counter[tuple[str, str]]]:
    """(samples, self time per (function, file), self time per package, inclusive time of our frames)."""
    own: Counter[tuple[str, str]] = Counter()
    packages: Counter[str] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_split(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        leaf = frames[-1]
        own[leaf] += n
        packages[leaf[1].split("/", 1)[0].removesuffix(".py")] += n
        for f in set(frames):
            if f[1].split("/", 1)[0] in _OWN_PACKAGES:
                inclusive[f] += n
    return total, own, packages, inclusive


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile", type=Path)
    p.add_argument("--top", type=int, default=15)
    a = p.parse_args()
    total, own, packages, inclusive = summarise(a.profile.read_text())
    if not total:
        raise SystemExit(f"{a.profile}: no samples")
    print(f"{a.profile}: {total} busy samples")
    print("\nself time by package:")
    for pkg, n in packages.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {pkg}")
    print("\nself time by function:")
    for (fn, path), n in own.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {fn}  ({path})")
    print("\ninclusive time of the project's own functions:")
    for (fn, path), n in inclusive.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {fn}  ({path})")


if __name__ == "__main__":
    main()
