"""Positions: the venue's signed size per market against the net quantity the fills on the bus add
up to (``ExecProjection.positions``). Compared after the fills are reconciled; what still differs is
reported, never papered over (no synthetic fills, no reconciliation orders). The average entry
price is checked against Nautilus's 0.01 % invariant and only counted when off (the venue prices
funding and fees into it differently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import schemas as s
from services.execution.projection import ExecProjection
from services.reconciler.venue import ZERO, VenuePosition


@dataclass
class PositionCheck:
    matched: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)  # (market, venue, bus)
    avg_px_off: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)


AVG_PX_TOLERANCE = Decimal("0.0001")  # 0.01%, Nautilus's reconciliation invariant


def compare_positions(proj: ExecProjection, positions: list[VenuePosition]) -> PositionCheck:
    """Net quantity per market: the venue's signed size against the fills on the bus."""
    out = PositionCheck()
    venue = {p.market: p for p in positions}
    bus = {s.market_of(iid): pv for iid, pv in proj.positions.items()}
    for market in sorted(set(venue) | set(bus)):
        vp = venue.get(market)
        v_qty = vp.size if vp is not None else ZERO
        pv = bus.get(market)
        b_qty = pv.net_qty if pv is not None else ZERO
        if v_qty != b_qty:
            out.mismatched.append((market, v_qty, b_qty))
            continue
        out.matched.append(market)
        if vp is not None and pv is not None and v_qty != 0 and vp.average_entry_price:
            diff = abs(pv.avg_px_open - vp.average_entry_price)
            if diff > vp.average_entry_price * AVG_PX_TOLERANCE:
                out.avg_px_off.append((market, vp.average_entry_price, pv.avg_px_open))
    return out
