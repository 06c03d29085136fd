"""A faithful local Paradex: REST ``/v1``, WebSocket JSON-RPC ``/v1``, a matching engine with
accounts, positions and funding, seeded background flow, and an admin API for ground truth and
fault injection (docs/simulator.md). Nothing here talks to the real venue.

``Simulator`` runs it in-process; ``python -m services.paradex_sim`` runs it as a process;
``services.paradex_sim.admin_client.AdminClient`` drives the admin API from tests.
"""

from services.paradex_sim.config import SimConfig
from services.paradex_sim.simulator import Simulator

__all__ = ["SimConfig", "Simulator"]
