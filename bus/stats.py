"""Counter sets: dataclasses of int counters that report themselves into ``ServiceHealth``.

Subclass ``Counters`` with a ``@dataclass`` of ``int`` fields and a class-level ``prefix``;
``as_counters()`` gives ``{prefix + field: value}`` for a service's ``counter_sources``.
"""

from __future__ import annotations

from typing import ClassVar


class Counters:
    prefix: ClassVar[str] = ""

    def as_counters(self, prefix: str | None = None) -> dict[str, int]:
        p = self.prefix if prefix is None else prefix
        return {p + k: v for k, v in vars(self).items()}
